//! One request through the filter (an HTTP stream's context): the decision on its head, served
//! from the cache when it can be (the hot path: no host call beyond reading the head), else
//! waiting for the root context's call; then, on the response, the `RateLimit-*` headers and
//! the response code for the report.

use crate::authrep::{self, Count, Step};
use crate::decision::{decide, Call, Decision};
use crate::host::{Host, Next};
use crate::stats::Stats;
use crate::timing;
use crate::vm::{self, Looked, Rate, Served, SharedVm, Waiter};
use std::cell::RefCell;
use std::rc::Rc;

pub struct Stream<H: Host> {
    host: H,
    context_id: u32,
    vm: SharedVm,
    /// The application and usage this request is authorized for.
    call: Option<Call>,
    served: Served,
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` for the response, if configured.
    rate: Rate,
}

impl<H: Host> Stream<H> {
    pub fn new(host: H, context_id: u32, vm: SharedVm) -> Stream<H> {
        Stream {
            host,
            context_id,
            vm,
            call: None,
            served: Rc::new(RefCell::new(None)),
            rate: None,
        }
    }

    pub fn request_headers(&mut self) -> Next {
        let (config, services, stats) = {
            let vm = self.vm.borrow();
            (vm.config.clone(), vm.services.clone(), vm.stats)
        };
        let Some(config) = config else { return Next::Continue };
        Stats::bump(stats.requests);
        let mut timer = timing::Timer::start(&self.host);
        let head = self.host.request_head();
        if cfg!(feature = "head-only") {
            std::hint::black_box(&head);
            return Next::Continue;
        }
        timer.lap(&self.host, timing::Step::Head);
        let decision = decide(services.as_deref(), config.failure_mode, &head);
        timer.lap(&self.host, timing::Step::Decide);
        let call = match decision {
            Decision::Now(authrep::Outcome::Allow) => {
                return self.apply(Step::Serve { count: Count::No }, stats, false)
            }
            Decision::Now(authrep::Outcome::Deny(r)) => return self.apply(Step::Reply(r), stats, false),
            Decision::Authorize(call) => call,
        };
        let Some(service) = vm::find(&services, call.service_id) else {
            return Next::Continue;
        };
        let key = authrep::cache_key(call.service_id, &call.credentials);
        let Looked { step, exact, rate } = vm::from_cache(&self.host, &self.vm, service, &key, &call.usage, None);
        timer.lap(&self.host, timing::Step::Cache);
        if config.limit_headers {
            self.rate = rate;
        }
        if step != Step::Fetch {
            // The hit path: the call is kept, not copied.
            self.call = Some(call);
            Stats::bump(stats.cache_hits);
            let next = self.apply(step, stats, exact);
            timer.lap(&self.host, timing::Step::Count);
            timer.done(&self.host);
            return next;
        }
        Stats::bump(stats.cache_misses);
        // The root context asks the control plane (it outlives any one request) and settles
        // every request of this VM waiting for the application; this one is the first, or joins.
        let mut vm = self.vm.borrow_mut();
        let first = !vm.waiting.contains_key(&key);
        vm.waiting.entry(key.clone()).or_default().push(Waiter {
            context_id: self.context_id,
            call: call.clone(),
            served: self.served.clone(),
        });
        if first {
            vm.asks.push(key);
            // Wakes the root context at once (failing that, its next tick asks).
            if let Some(queue) = vm.queue {
                self.host.enqueue(queue, b"ask");
            }
        }
        drop(vm);
        self.call = Some(call);
        Next::Pause
    }

    /// Adds the `RateLimit-*` headers, and counts the response code of a request let through
    /// (the upstream's, or Envoy's own when the upstream failed). Read here rather than at the
    /// end of the stream: the filter exports no `proxy_on_log`, so Envoy makes one call fewer
    /// into the VM per request (see `scripts/build-filter.sh`).
    pub fn response_headers(&mut self) -> Next {
        if let Some((limit, remaining, reset)) = self.rate {
            self.host.add_response_header("ratelimit-limit", &limit.to_string());
            self.host
                .add_response_header("ratelimit-remaining", &remaining.to_string());
            self.host.add_response_header("ratelimit-reset", &reset.to_string());
        }
        self.count_code();
        Next::Continue
    }

    /// `log[code]` for a request let through, when the configuration asks for it.
    fn count_code(&self) {
        let (Some(unverified), Some(call)) = (*self.served.borrow(), self.call.as_ref()) else {
            return;
        };
        let report_codes = self
            .vm
            .borrow()
            .config
            .as_ref()
            .is_some_and(|c| c.report_response_codes);
        let Some(code) = report_codes
            .then(|| self.host.response_status())
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
        else {
            return;
        };
        self.vm
            .borrow_mut()
            .usage
            .entry(call.app(unverified))
            .or_default()
            .add(&[], Some(code));
    }

    /// Carries out a step for this request (the current context); `exact`: see [`vm::Vm::count`].
    fn apply(&self, step: Step, stats: Stats, exact: bool) -> Next {
        match vm::carry_out(
            &self.host,
            &self.vm,
            self.call.as_ref(),
            &self.served,
            &step,
            exact,
            stats,
        ) {
            true => Next::Continue,
            false => Next::Pause,
        }
    }
}
