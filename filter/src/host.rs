//! Everything the filter asks of Envoy, as one trait: the clock, shared data, outbound calls
//! and their answers, the current request (its head, a local reply, resuming it), queues
//! between workers, metrics, logs. The root and request logic ([`crate::root`],
//! [`crate::stream`]) is generic over it: on wasm32 the glue implements it over proxy-wasm's
//! host calls (a type without fields, so every call compiles to the host call itself); in
//! native tests a fake host (`fake.rs`) plays Envoy with several workers, a clock that
//! moves when told, and calls that are answered when the test says.

use crate::request::RequestHead;
use crate::shared::SharedData;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// What a request does after a callback: go on (upstream, or out with the reply the filter
/// sent), or wait until the filter resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Pause,
}

/// The host, as one worker VM sees it. Calls the filter cannot act on when they fail (a log
/// line, a metric) return nothing.
pub trait Host: SharedData + Clone {
    /// Nanoseconds since the epoch.
    fn now_nanos(&self) -> u128;

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now_nanos() / 1_000_000).unwrap_or(u64::MAX)
    }

    fn log(&self, level: Level, message: &str);

    /// The plugin's configuration (JSON), as Envoy was given it.
    fn plugin_configuration(&self) -> Vec<u8>;

    /// Calls the root context's tick every `ms`.
    fn set_tick_period(&self, ms: u64);

    /// Sends a call to `cluster`; its answer comes to the root context with the token returned.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String>;

    /// The `:status` of the call being answered (in the root context's answer callback).
    fn call_status(&self) -> Option<String>;

    /// The first `size` bytes of the body of the call being answered.
    fn call_body(&self, size: usize) -> Vec<u8>;

    /// The current request's head.
    fn request_head(&self) -> RequestHead;

    /// The current request's response `:status`.
    fn response_status(&self) -> Option<String>;

    fn add_response_header(&self, name: &str, value: &str);

    /// Answers the current request here, without the upstream.
    fn reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);

    /// Makes `context_id` the current context (false: it is gone, e.g. the client left).
    fn enter(&self, context_id: u32) -> bool;

    /// Resumes the current (paused) request.
    fn resume(&self);

    /// Tells the host the root context has finished what `on_done` left pending.
    fn done(&self);

    /// A queue other workers can write to; its messages wake this VM's root context.
    fn register_queue(&self, name: &str) -> Result<u32, String>;

    fn enqueue(&self, queue: u32, message: &[u8]) -> bool;

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>>;

    /// A metric's id; defining a name again gives the same metric (Envoy's stats are shared by
    /// the workers).
    fn define_metric(&self, kind: MetricKind, name: &str) -> u32;

    fn increment_metric(&self, id: u32, by: i64);

    fn record_metric(&self, id: u32, value: u64);
}
