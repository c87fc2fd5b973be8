//! Shared data as proxy-wasm gives it: one key space of byte values shared by every worker VM,
//! each value with a CAS token. The cache and the report buffer only need this trait; every
//! [`crate::host::Host`] has it (the glue over the host calls). [`Memory`] implements it natively, with Envoy's
//! semantics, so that the cache and the report buffer are tested as they run.
//!
//! One Envoy rule shapes the design: a `set` on a key that does not exist yet succeeds
//! whatever CAS it carries. Two workers creating one key can therefore overwrite each other.
//! Keys that hold counts are created empty, before traffic, by [`ensure`]. After that every
//! update is a CAS on an existing key, and no update is lost.

use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// Someone else wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The host refused (e.g. out of memory).
    Host(String),
}

pub trait SharedData {
    /// The value and its CAS token; `(None, None)` when the key does not exist.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the key's CAS is still `cas` (`None`: unconditionally). A missing
    /// key is created whatever `cas` says (Envoy's behaviour).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

/// Which of `n` keys `bytes` belongs to: FNV-1a, so the same in every worker and every build
/// (std's hasher is randomly seeded).
pub fn spread(bytes: &[u8], n: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    h % n.max(1)
}

/// How many times [`update`] retries after CAS conflicts before giving up.
pub const MAX_RETRIES: usize = 32;

/// Creates `key` with `empty` unless it exists. Racing creators all write `empty`, so the race
/// is harmless as long as this runs before anything counts into the key.
pub fn ensure(shared: &impl SharedData, key: &str, empty: &[u8]) -> Result<(), SetError> {
    match shared.get(key) {
        (Some(_), _) => Ok(()),
        (None, _) => shared.set(key, empty, None),
    }
}

/// Read-modify-write under CAS, retried on conflicts: `f` gets the current value (if any) and
/// returns the new value (`None`: write nothing) and a result.
pub fn update<T>(
    shared: &impl SharedData,
    key: &str,
    mut f: impl FnMut(Option<&[u8]>) -> (Option<Vec<u8>>, T),
) -> Result<T, SetError> {
    for _ in 0..MAX_RETRIES {
        let (current, cas) = shared.get(key);
        let (next, out) = f(current.as_deref());
        let Some(next) = next else { return Ok(out) };
        // A key read as missing is created without CAS; the callers that count make sure their
        // keys exist first (see `ensure`).
        match shared.set(key, &next, cas) {
            Ok(()) => return Ok(out),
            Err(SetError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(SetError::CasMismatch)
}

/// The next number of the sequence kept under `key` (1, 2, …), for names that must differ
/// between the workers (leases, batch ids, queues): their memory layouts are identical, and
/// they may start within the same millisecond.
pub fn next_in_sequence(shared: &impl SharedData, key: &str) -> Result<u64, SetError> {
    update(shared, key, |current| {
        let n = current
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        (Some(n.to_string().into_bytes()), n)
    })
}

/// Shared data in memory, with Envoy's semantics (CAS tokens from one counter; a missing key is
/// created whatever the CAS). One VM's view: single-threaded, as proxy-wasm is.
#[derive(Debug, Default)]
pub struct Memory {
    values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: RefCell<u32>,
}

impl Memory {
    pub fn keys(&self) -> Vec<String> {
        self.values.borrow().keys().cloned().collect()
    }
}

impl SharedData for Memory {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut values = self.values.borrow_mut();
        let next = {
            let mut n = self.next_cas.borrow_mut();
            *n = n.wrapping_add(1).max(1);
            *n
        };
        match values.get_mut(key) {
            Some((_, current)) if cas.is_some_and(|c| c != 0 && c != *current) => Err(SetError::CasMismatch),
            Some(slot) => {
                *slot = (value.to_vec(), next);
                Ok(())
            }
            None => {
                values.insert(key.to_string(), (value.to_vec(), next));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_never_repeats() {
        let m = Memory::default();
        let drawn: Vec<u64> = (0..5).map(|_| next_in_sequence(&m, "seq").unwrap()).collect();
        assert_eq!(drawn, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn cas_rejects_stale_writes_and_update_retries() {
        let m = Memory::default();
        ensure(&m, "k", b"0").unwrap();
        let (_, stale) = m.get("k");
        m.set("k", b"1", stale).unwrap();
        assert_eq!(m.set("k", b"2", stale), Err(SetError::CasMismatch));
        let n = update(&m, "k", |v| {
            let n: u32 = std::str::from_utf8(v.unwrap_or(b"0")).unwrap().parse().unwrap();
            (Some((n + 1).to_string().into_bytes()), n + 1)
        })
        .unwrap();
        assert_eq!(n, 2);
        ensure(&m, "k", b"0").unwrap();
        assert_eq!(m.get("k").0.as_deref(), Some(&b"2"[..]), "ensure never resets");
    }
}
