//! Signing in with a password: how wrong guesses are throttled, and when a session ends.
//!
//! Guessing is slowed per user name and per client address alike (one attacker trying many
//! names, or many addresses trying one name): after [`Throttle::free_failures`] wrong
//! passwords inside [`Throttle::window`], each further one locks that key for twice as long as
//! the one before, up to [`Throttle::max_lock`]. A right password clears the user's key (not
//! the address's: one good account must not unlock an address that guesses at others). The
//! answer to a locked try says when to come back, and the password is not even checked then,
//! so a lock costs the server nothing.

use chrono::{DateTime, Duration, Utc};

/// The policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub free_failures: u32,
    pub window: Duration,
    pub first_lock: Duration,
    pub max_lock: Duration,
}

impl Default for Throttle {
    /// Five free tries in 15 minutes, then 30 s, 1 min, 2 min, … up to an hour.
    fn default() -> Self {
        Throttle {
            free_failures: 5,
            window: Duration::minutes(15),
            first_lock: Duration::seconds(30),
            max_lock: Duration::hours(1),
        }
    }
}

/// One key's recent wrong passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures {
    pub failures: u32,
    pub first_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Throttle {
    /// When a try is allowed again; `None`: now.
    pub fn retry_at(&self, f: Option<&Failures>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        f.and_then(|f| f.locked_until).filter(|until| *until > now)
    }

    /// The key's record after one more wrong password at `now`.
    pub fn after_failure(&self, f: Option<&Failures>, now: DateTime<Utc>) -> Failures {
        let recent = f.filter(|f| now - f.first_at < self.window || f.locked_until.is_some_and(|u| u > now));
        let failures = recent.map_or(1, |f| f.failures.saturating_add(1));
        let first_at = recent.map_or(now, |f| f.first_at);
        let locked_until = (failures > self.free_failures).then(|| {
            let doublings = (failures - self.free_failures - 1).min(20);
            let lock = self.first_lock * 2i32.pow(doublings);
            now + lock.min(self.max_lock)
        });
        Failures {
            failures,
            first_at,
            locked_until,
        }
    }
}

/// Whether a session last seen at `last_seen` is still alive at `now`, ending after `idle`
/// without a request.
pub fn session_alive(last_seen: DateTime<Utc>, now: DateTime<Utc>, idle: Duration) -> bool {
    now - last_seen < idle
}

/// Whether a password is acceptable: 6 to 256 characters (porta's minimum, which 3scale's
/// clients rely on), not all blank. Names the rule broken.
pub fn check_password(p: &str) -> Result<(), &'static str> {
    let n = p.chars().count();
    if n < 6 {
        Err("is too short (minimum is 6 characters)")
    } else if n > 256 {
        Err("is too long (maximum is 256 characters)")
    } else if p.trim().is_empty() {
        Err("must not be blank")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn five_free_then_doubling_locks() {
        let p = Throttle::default();
        let mut f: Option<Failures> = None;
        for i in 0..5 {
            assert_eq!(p.retry_at(f.as_ref(), t(i)), None);
            f = Some(p.after_failure(f.as_ref(), t(i)));
        }
        assert_eq!(f.as_ref().unwrap().locked_until, None, "five are free");
        f = Some(p.after_failure(f.as_ref(), t(5)));
        assert_eq!(p.retry_at(f.as_ref(), t(5)), Some(t(35)));
        f = Some(p.after_failure(f.as_ref(), t(35)));
        assert_eq!(p.retry_at(f.as_ref(), t(35)), Some(t(95)));
        // A quiet window forgets (once no lock holds).
        let later = p.after_failure(f.as_ref(), t(3600));
        assert_eq!((later.failures, later.locked_until), (1, None));
    }

    #[test]
    fn passwords() {
        assert!(check_password("short").is_err());
        assert!(check_password("123456").is_ok(), "what 3scale's own client tests use");
        assert!(check_password("long enough").is_ok());
        assert!(check_password("        ").is_err());
        assert!(check_password(&"x".repeat(257)).is_err());
    }

    proptest! {
        #[test]
        fn locks_never_exceed_the_maximum_nor_shrink(gaps in proptest::collection::vec(0i64..120, 1..40)) {
            let p = Throttle::default();
            let (mut f, mut now, mut last_lock) = (None::<Failures>, 0i64, Duration::zero());
            for g in gaps {
                now += g;
                let before = f.clone();
                let next = p.after_failure(f.as_ref(), t(now));
                if let Some(until) = next.locked_until {
                    let lock = until - t(now);
                    prop_assert!(lock <= p.max_lock);
                    if before.is_some_and(|b| b.first_at == next.first_at) {
                        prop_assert!(lock >= last_lock);
                    }
                    last_lock = lock;
                } else {
                    last_lock = Duration::zero();
                }
                f = Some(next);
            }
        }
    }
}
