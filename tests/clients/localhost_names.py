"""A pytest plugin: every `*.localhost` name resolves to the loopback, as browsers and curl do
(RFC 6761). The staging gateway's default public hosts are `{system_name}-staging.localhost`;
this machine's resolver does not answer for them, and the 3scale-api tests call them by name.
Loaded with `-p localhost_names` (tests/clients on PYTHONPATH)."""

import socket

_getaddrinfo = socket.getaddrinfo


def _resolve(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve
