//! proxy-wasm adapter: [`Envoy`] is the [`Host`] over proxy-wasm's host calls, and the SDK's
//! contexts hand each callback to the core ([`Root`], [`Stream`]). Nothing is decided here.
//!
//! The SDK's own context helpers unwrap the host's answers; the calls here go through
//! `hostcalls` and treat a failure as "nothing there".

use crate::host::{Host, Level, MetricKind, Next};
use crate::request::RequestHead;
use crate::root::Root;
use crate::shared::{SetError, SharedData};
use crate::stream::Stream;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(RootGlue(Root::new(Envoy, context_id)))
    });
}}

/// The host: Envoy, through proxy-wasm's host calls.
#[derive(Clone, Copy)]
pub struct Envoy;

impl SharedData for Envoy {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(e) => Err(SetError::Host(format!("{e:?}"))),
        }
    }
}

impl Host for Envoy {
    fn now_nanos(&self) -> u128 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn plugin_configuration(&self) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_tick_period(&self, ms: u64) {
        let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn call_status(&self) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
    }

    fn call_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn request_head(&self) -> RequestHead {
        RequestHead::from_header_map(raw::request_header_map())
    }

    fn response_status(&self) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn enter(&self, context_id: u32) -> bool {
        hostcalls::set_effective_context(context_id).is_ok()
    }

    fn resume(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn done(&self) {
        let _ = hostcalls::done();
    }

    fn register_queue(&self, name: &str) -> Result<u32, String> {
        hostcalls::register_shared_queue(name).map_err(|status| format!("{status:?}"))
    }

    fn enqueue(&self, queue: u32, message: &[u8]) -> bool {
        hostcalls::enqueue_shared_queue(queue, Some(message)).is_ok()
    }

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>> {
        hostcalls::dequeue_shared_queue(queue).ok().flatten()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> u32 {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).unwrap_or(0)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

fn action(next: Next) -> Action {
    match next {
        Next::Continue => Action::Continue,
        Next::Pause => Action::Pause,
    }
}

struct RootGlue(Root<Envoy>);

impl Context for RootGlue {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        self.0.call_answered(token, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.0.stop()
    }
}

impl RootContext for RootGlue {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.0.configure()
    }

    fn on_tick(&mut self) {
        self.0.tick();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        self.0.queue_ready(queue_id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(StreamGlue(self.0.stream(context_id))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct StreamGlue(Stream<Envoy>);

impl Context for StreamGlue {}

impl HttpContext for StreamGlue {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        action(self.0.request_headers())
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        action(self.0.response_headers())
    }
}

/// The one host call the SDK has no borrowing form of.
mod raw {
    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> Status;
    }

    /// The request's header map, serialized (see [`crate::request::HeaderMap`]); empty when
    /// Envoy has none to give.
    pub fn request_header_map() -> Vec<u8> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host allocates `size` bytes with the SDK's allocator (its
        // `proxy_on_memory_allocate` export, a `Vec<u8>` of that capacity) and hands their
        // ownership over, as in the SDK's own `hostcalls::get_map`.
        unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
                _ => Vec::new(),
            }
        }
    }
}
