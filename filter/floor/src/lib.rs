//! The least a proxy-wasm filter costs in Envoy. Written straight against the ABI (no SDK), it
//! exports one callback per request, `proxy_on_request_headers`, and no context, response or
//! end-of-stream callbacks, so Envoy enters the VM once per request where the SDK's dispatcher
//! takes four (context, request headers, done, delete; five with response headers).
//! `scripts/bench-filter.sh` (`BENCH_INSTRUCTIONS=1`) counts what these cost beside Tollgate's
//! filter: what any filter pays before it does anything, and what leaving the SDK could save.
//!
//!     scripts/build-filter.sh --floor       # enters the VM and returns: target/floor_filter.wasm
//!     scripts/build-filter.sh --floor-head  # reads the request head: target/floor_head_filter.wasm
//!     scripts/build-filter.sh --floor-lean  # the head and the clock, the host calls of
//!                                           # Tollgate's cached path: target/floor_lean_filter.wasm
//!
//! Not a filter to deploy: it allows every request.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg_attr(target_arch = "wasm32", link(wasm_import_module = "env"))]
extern "C" {
    fn proxy_get_header_map_pairs(map: u32, pairs: *mut *mut u8, pairs_len: *mut usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
}

const OK: u32 = 0;
const REQUEST_HEADERS: u32 = 0;
const CONTINUE: u32 = 0;

/// What the host calls returned, so that the optimiser keeps them.
static SEEN: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Where the host writes what a host call returns; [`take`] frees it.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buf = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    buf.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context: u32, _config_len: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context: u32, _config_len: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _end_of_stream: bool) -> u32 {
    let mut seen = 0;
    if cfg!(feature = "head") {
        seen += request_head().len() as u64;
    }
    if cfg!(feature = "lean") {
        let mut now = 0;
        // SAFETY: the out-parameter outlives the call.
        unsafe { proxy_get_current_time_nanoseconds(&mut now) };
        seen += now;
    }
    SEEN.fetch_add(seen.min(1), Ordering::Relaxed);
    CONTINUE
}

/// The request's headers, serialised by the host (count, sizes, then the names and values).
fn request_head() -> Vec<u8> {
    let (mut data, mut len) = (null_mut(), 0);
    // SAFETY: the out-parameters outlive the call, and the host allocated what it returns with
    // `proxy_on_memory_allocate(len)`, which is taken over exactly once.
    unsafe {
        match proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut len) {
            OK if !data.is_null() => Vec::from_raw_parts(data, len, len),
            _ => Vec::new(),
        }
    }
}
