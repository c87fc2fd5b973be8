#!/usr/bin/env python3
"""drop-wasm-exports.py IN OUT NAME...: copies a wasm module without the named exports.

Why: Envoy calls into the VM only for the callbacks a module exports (proxy-wasm-cpp-host
skips `proxy_on_response_body` and the like when they are absent), and each call into V8 costs
microseconds. The Rust SDK exports every callback whether the filter uses it or not, so
scripts/build-filter.sh removes the ones Tollgate does not implement. The functions stay in
the module, unreferenced. A name that is not exported is an error: the list must stay true
to the SDK.
"""
import sys


def uleb(data, i):
    """Reads an unsigned LEB128 at i: (value, next index)."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def to_uleb(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


EXPORT_SECTION = 7


def drop_exports(module, names):
    if module[:4] != b"\0asm":
        raise ValueError("not a wasm module")
    out, i, dropped = bytearray(module[:8]), 8, set()
    while i < len(module):
        section = module[i]
        size, start = uleb(module, i + 1)
        body, i = module[start:start + size], start + size
        if section == EXPORT_SECTION:
            count, j = uleb(body, 0)
            kept = []
            for _ in range(count):
                length, k = uleb(body, j)
                name = body[k:k + length].decode()
                _, end = uleb(body, k + length + 1)  # the kind byte, then the index
                if name in names:
                    dropped.add(name)
                else:
                    kept.append(body[j:end])
                j = end
            body = to_uleb(len(kept)) + b"".join(kept)
        out += bytes([section]) + to_uleb(len(body)) + body
    missing = set(names) - dropped
    if missing:
        raise ValueError("not exported: " + ", ".join(sorted(missing)))
    return bytes(out)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dst, *drop = sys.argv[1:]
    try:
        with open(src, "rb") as f:
            result = drop_exports(f.read(), set(drop))
    except ValueError as e:
        sys.exit(f"drop-wasm-exports: {src}: {e}")
    with open(dst, "wb") as f:
        f.write(result)
