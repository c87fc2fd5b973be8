//! A fake Envoy for native tests: one process ([`Process`]) with several worker VMs, each a
//! [`Root`] and its [`Stream`]s over a [`Fake`] host. Shared data, queues and metrics are the
//! process's, as in Envoy; the clock moves only when the test says; outbound calls wait until
//! the test answers them; queue messages reach their worker when the test delivers them. So a
//! test can play any interleaving of workers, answers and timeouts, deterministically.

use crate::host::{Host, Level, MetricKind, Next};
use crate::request::RequestHead;
use crate::root::Root;
use crate::shared::{Memory, SetError, SharedData};
use crate::stream::Stream;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// What the workers of one Envoy share.
#[derive(Default)]
struct Outside {
    memory: Memory,
    clock_ms: Cell<u64>,
    config: RefCell<Vec<u8>>,
    /// Per queue id (its index).
    queues: RefCell<Vec<Queue>>,
    metrics: RefCell<Vec<(String, i64)>>,
    logs: RefCell<Vec<(Level, String)>>,
    next_token: Cell<u32>,
    /// CAS writes still to fail as if another worker had written first.
    conflicts: Cell<u32>,
}

/// A worker's wake-up queue.
struct Queue {
    owner: usize,
    messages: VecDeque<Vec<u8>>,
}

/// An outbound call a worker made.
#[derive(Debug, Clone)]
pub struct Sent {
    pub token: u32,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Sent {
    pub fn path(&self) -> &str {
        self.headers.iter().find(|(k, _)| k == ":path").map_or("", |(_, v)| v)
    }
}

/// A local reply: the request context, status, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub context: u32,
    pub status: u32,
    pub body: String,
}

/// One worker's view of the host.
#[derive(Default)]
struct Inside {
    worker: usize,
    current: Cell<u32>,
    sent: RefCell<Vec<Sent>>,
    /// The call being answered: status, body.
    answering: RefCell<(Option<String>, Vec<u8>)>,
    heads: RefCell<HashMap<u32, RequestHead>>,
    response_status: RefCell<HashMap<u32, String>>,
    added_headers: RefCell<Vec<(u32, String, String)>>,
    replies: RefCell<Vec<Reply>>,
    resumed: RefCell<Vec<u32>>,
    gone: RefCell<HashSet<u32>>,
    done: Cell<bool>,
}

#[derive(Clone)]
pub struct Fake {
    outside: Rc<Outside>,
    inside: Rc<Inside>,
}

impl SharedData for Fake {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.outside.memory.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let conflicts = self.outside.conflicts.get();
        if conflicts > 0 && cas.is_some() {
            self.outside.conflicts.set(conflicts - 1);
            return Err(SetError::CasMismatch);
        }
        self.outside.memory.set(key, value, cas)
    }
}

impl Host for Fake {
    fn now_nanos(&self) -> u128 {
        u128::from(self.outside.clock_ms.get()) * 1_000_000
    }

    fn log(&self, level: Level, message: &str) {
        self.outside.logs.borrow_mut().push((level, message.to_string()));
    }

    fn plugin_configuration(&self) -> Vec<u8> {
        self.outside.config.borrow().clone()
    }

    fn set_tick_period(&self, _ms: u64) {}

    fn dispatch(
        &self,
        _cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        let token = self.outside.next_token.get() + 1;
        self.outside.next_token.set(token);
        self.inside.sent.borrow_mut().push(Sent {
            token,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.map(<[u8]>::to_vec),
        });
        Ok(token)
    }

    fn call_status(&self) -> Option<String> {
        self.inside.answering.borrow().0.clone()
    }

    fn call_body(&self, size: usize) -> Vec<u8> {
        let body = &self.inside.answering.borrow().1;
        body.get(..size.min(body.len())).unwrap_or_default().to_vec()
    }

    fn request_head(&self) -> RequestHead {
        let current = self.inside.current.get();
        self.inside
            .heads
            .borrow_mut()
            .remove(&current)
            .unwrap_or_else(|| RequestHead::new("GET", "/", "", &[]))
    }

    fn response_status(&self) -> Option<String> {
        self.inside
            .response_status
            .borrow()
            .get(&self.inside.current.get())
            .cloned()
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let current = self.inside.current.get();
        self.inside
            .added_headers
            .borrow_mut()
            .push((current, name.to_string(), value.to_string()));
    }

    fn reply(&self, status: u32, _headers: &[(&str, &str)], body: &[u8]) {
        self.inside.replies.borrow_mut().push(Reply {
            context: self.inside.current.get(),
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }

    fn enter(&self, context_id: u32) -> bool {
        if self.inside.gone.borrow().contains(&context_id) {
            return false;
        }
        self.inside.current.set(context_id);
        true
    }

    fn resume(&self) {
        self.inside.resumed.borrow_mut().push(self.inside.current.get());
    }

    fn done(&self) {
        self.inside.done.set(true);
    }

    fn register_queue(&self, _name: &str) -> Result<u32, String> {
        let mut queues = self.outside.queues.borrow_mut();
        queues.push(Queue {
            owner: self.inside.worker,
            messages: VecDeque::new(),
        });
        u32::try_from(queues.len() - 1).map_err(|e| e.to_string())
    }

    fn enqueue(&self, queue: u32, message: &[u8]) -> bool {
        match self.outside.queues.borrow_mut().get_mut(queue as usize) {
            Some(q) => {
                q.messages.push_back(message.to_vec());
                true
            }
            None => false,
        }
    }

    fn dequeue(&self, queue: u32) -> Option<Vec<u8>> {
        self.outside
            .queues
            .borrow_mut()
            .get_mut(queue as usize)?
            .messages
            .pop_front()
    }

    fn define_metric(&self, _kind: MetricKind, name: &str) -> u32 {
        let mut metrics = self.outside.metrics.borrow_mut();
        let id = match metrics.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                metrics.push((name.to_string(), 0));
                metrics.len() - 1
            }
        };
        u32::try_from(id).unwrap_or(u32::MAX)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        if let Some((_, n)) = self.outside.metrics.borrow_mut().get_mut(id as usize) {
            *n += by;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some((_, n)) = self.outside.metrics.borrow_mut().get_mut(id as usize) {
            *n = i64::try_from(value).unwrap_or(i64::MAX);
        }
    }
}

const ROOT_CONTEXT: u32 = 1;

/// One worker VM: its root context and its open requests.
pub struct Worker {
    pub host: Fake,
    pub root: Root<Fake>,
    streams: HashMap<u32, Stream<Fake>>,
    next_context: u32,
}

impl Worker {
    /// A request arrives: `GET path` to `authority`. Its context id, and what the filter did.
    pub fn request(&mut self, path: &str) -> (u32, Next) {
        self.next_context += 1;
        let context = self.next_context;
        self.host
            .inside
            .heads
            .borrow_mut()
            .insert(context, RequestHead::new("GET", path, "api.example.com", &[]));
        self.host.enter(context);
        let mut stream = self.root.stream(context);
        let next = stream.request_headers();
        self.streams.insert(context, stream);
        self.host.enter(ROOT_CONTEXT);
        (context, next)
    }

    /// The response to request `context` starts (from the upstream, or the filter's reply).
    pub fn respond(&mut self, context: u32, status: u16) -> Vec<(String, String)> {
        self.host
            .inside
            .response_status
            .borrow_mut()
            .insert(context, status.to_string());
        self.host.enter(context);
        if let Some(stream) = self.streams.get_mut(&context) {
            stream.response_headers();
        }
        self.host.enter(ROOT_CONTEXT);
        self.streams.remove(&context);
        let added = self.host.inside.added_headers.borrow();
        added
            .iter()
            .filter(|(c, _, _)| *c == context)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The client of request `context` leaves (Envoy destroys its context).
    pub fn leave(&mut self, context: u32) {
        self.streams.remove(&context);
        self.host.inside.gone.borrow_mut().insert(context);
    }

    pub fn tick(&mut self) {
        self.root.tick();
    }

    /// The calls not answered yet.
    pub fn calls(&self) -> Vec<Sent> {
        self.host.inside.sent.borrow().clone()
    }

    /// Answers call `token` (`status` `None`: it failed or timed out).
    pub fn answer(&mut self, token: u32, status: Option<&str>, body: &[u8]) {
        let position = self.host.inside.sent.borrow().iter().position(|s| s.token == token);
        let Some(position) = position else {
            panic!("no call {token} in flight")
        };
        self.host.inside.sent.borrow_mut().remove(position);
        *self.host.inside.answering.borrow_mut() = (status.map(str::to_string), body.to_vec());
        self.root.call_answered(token, body.len());
    }

    /// The one call in flight whose path starts with `prefix`.
    pub fn call_to(&self, prefix: &str) -> Sent {
        let calls: Vec<Sent> = self
            .calls()
            .into_iter()
            .filter(|c| c.path().starts_with(prefix))
            .collect();
        assert_eq!(calls.len(), 1, "calls to {prefix}: {calls:?}");
        calls.into_iter().next().unwrap_or_else(|| unreachable!())
    }

    pub fn replies(&self) -> Vec<Reply> {
        self.host.inside.replies.borrow().clone()
    }

    pub fn resumed(&self) -> Vec<u32> {
        self.host.inside.resumed.borrow().clone()
    }

    pub fn is_done(&self) -> bool {
        self.host.inside.done.get()
    }
}

/// One Envoy process.
pub struct Process {
    outside: Rc<Outside>,
    pub workers: Vec<Worker>,
}

impl Process {
    /// `workers` VMs configured with `config` (their configure must succeed).
    pub fn new(config: &str, workers: usize) -> Process {
        let outside = Rc::new(Outside::default());
        outside.clock_ms.set(1_000_000_000);
        *outside.config.borrow_mut() = config.as_bytes().to_vec();
        let workers = (0..workers)
            .map(|worker| {
                let host = Fake {
                    outside: outside.clone(),
                    inside: Rc::new(Inside {
                        worker,
                        current: Cell::new(ROOT_CONTEXT),
                        ..Inside::default()
                    }),
                };
                let mut root = Root::new(host.clone(), ROOT_CONTEXT);
                assert!(root.configure(), "configure: {:?}", outside.logs.borrow());
                Worker {
                    host,
                    root,
                    streams: HashMap::new(),
                    next_context: ROOT_CONTEXT,
                }
            })
            .collect();
        Process { outside, workers }
    }

    pub fn now_ms(&self) -> u64 {
        self.outside.clock_ms.get()
    }

    /// The next `n` CAS writes lose to another worker's.
    pub fn conflict(&self, n: u32) {
        self.outside.conflicts.set(n);
    }

    pub fn advance(&self, ms: u64) {
        self.outside.clock_ms.set(self.outside.clock_ms.get() + ms);
    }

    /// Envoy wakes each worker whose queue has messages, until none has.
    pub fn deliver(&mut self) {
        loop {
            let ready = self
                .outside
                .queues
                .borrow()
                .iter()
                .enumerate()
                .find(|(_, q)| !q.messages.is_empty())
                .map(|(id, q)| (id, q.owner));
            let Some((id, owner)) = ready else { return };
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            self.workers[owner].root.queue_ready(id);
        }
    }

    /// A metric's value, by name (the workers' counts together, as Envoy's stats are).
    pub fn metric(&self, name: &str) -> i64 {
        self.outside
            .metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn logs(&self) -> Vec<String> {
        self.outside.logs.borrow().iter().map(|(_, m)| m.clone()).collect()
    }
}
