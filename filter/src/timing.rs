//! Where a cached request's time goes inside the VM, step by step (feature `timing`, for
//! `BENCH_TIMING=1 scripts/bench-filter.sh`): the bench cannot resolve microseconds on shared
//! cores, the host clock inside the VM can. Each lap reads the clock, a host call (about 1 µs)
//! counted in the step it ends. Without the feature the timer is empty and compiles to nothing.

#[derive(Clone, Copy)]
pub enum Step {
    /// Reading the request head from Envoy.
    Head,
    /// Service, mapping rules and credentials.
    Decide,
    /// Cache key, this worker's share, the verdict.
    Cache,
    /// Counting the request let through.
    Count,
}

#[cfg(feature = "timing")]
mod on {
    use super::Step;
    use crate::host::{Host, Level};
    use std::cell::RefCell;

    /// Requests per VM between reports.
    const EVERY: u64 = 10_000;

    thread_local! {
        /// Nanoseconds per step, and the requests timed, since the last report.
        static TOTALS: RefCell<([u64; 4], u64)> = const { RefCell::new(([0; 4], 0)) };
    }

    pub struct Timer(u128);

    impl Timer {
        pub fn start(host: &impl Host) -> Timer {
            Timer(host.now_nanos())
        }

        pub fn lap(&mut self, host: &impl Host, step: Step) {
            let now = host.now_nanos();
            let spent = u64::try_from(now.saturating_sub(self.0)).unwrap_or(u64::MAX);
            TOTALS.with(|t| {
                if let Some(total) = t.borrow_mut().0.get_mut(step as usize) {
                    *total = total.saturating_add(spent);
                }
            });
            self.0 = now;
        }

        /// One cached request timed; every [`EVERY`] of them, a log line with the means.
        pub fn done(self, host: &impl Host) {
            TOTALS.with(|t| {
                let mut t = t.borrow_mut();
                t.1 += 1;
                if t.1 >= EVERY {
                    let [head, decide, cache, count] = t.0.map(|ns| ns / t.1);
                    host.log(
                        Level::Info,
                        &format!(
                            "tollgate timing: {} cached requests, mean ns: head {head} decide {decide} cache {cache} count {count}",
                            t.1
                        ),
                    );
                    *t = ([0; 4], 0);
                }
            });
        }
    }
}

#[cfg(not(feature = "timing"))]
mod on {
    use crate::host::Host;

    pub struct Timer;

    impl Timer {
        pub fn start(_host: &impl Host) -> Timer {
            Timer
        }
        pub fn lap(&mut self, _host: &impl Host, _step: super::Step) {}
        pub fn done(self, _host: &impl Host) {}
    }
}

pub use on::Timer;
