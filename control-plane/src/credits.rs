//! Prepaid credits' place in authorize/authrep. A prepaid account's call costs credits; the
//! cost is one more counter op of the call ("credits spent", limited by what the account was
//! granted), so it is checked and deducted atomically with the limit counters, in the same Lua
//! script or under the same shard lock, and a denied call deducts nothing.
//!
//! Which accounts are prepaid, their rates and grants are the prepaid-credits work still to come;
//! until then no account is prepaid and [`ops`] adds nothing.

use crate::catalog::applications::Application;
use crate::counters::{exceeds, Amount, Op};
use std::collections::BTreeMap;

/// The reserved counter id of an account's spent credits (metric ids are positive; response
/// codes take -1..=-999, see [`crate::limits::response_code_counters`]).
pub const SPENT_COUNTER: i64 = -1000;

/// The call's credit op, if the application's account is prepaid: none yet (see the module docs).
pub fn ops(_app: &Application, _usage: &BTreeMap<i64, Amount>) -> Vec<Op> {
    Vec::new()
}

/// Whether a denied call was denied for its credits: its credit op would pass the balance.
pub fn exhausted(ops: &[Op], values: &[i64]) -> bool {
    ops.iter()
        .zip(values)
        .any(|(op, value)| op.metric_id == SPENT_COUNTER && exceeds(*value, op.amount, op.max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::periods::Period;

    #[test]
    fn a_credit_op_that_passes_the_balance_is_exhaustion() {
        let op = |metric_id, max| Op {
            metric_id,
            period: Period::Eternity,
            start: 0,
            ttl: None,
            amount: Amount::Add(5),
            max: Some(max),
            account: None,
        };
        assert!(exhausted(&[op(1, 100), op(SPENT_COUNTER, 10)], &[0, 6]));
        assert!(
            !exhausted(&[op(1, 3), op(SPENT_COUNTER, 10)], &[0, 5]),
            "the limit denied it"
        );
    }
}
