//! Prepaid credits (SPEC §7): a prepaid account's calls cost credits, and the balance is
//! enforced in authrep itself, not minutes later. The rules are the domain's
//! ([`tollgate_domain::credits`]); this module keeps them:
//!
//! - **The hot balance** is the account's spent counter, moved atomically with the limit
//!   counters of every call; a denied call deducts nothing.
//! - **The ledger** (`credit_transactions`, [`ledger`]) is the truth: grants, adjustments and
//!   expiries are written when they happen; deductions by [`flush`], which copies the spent
//!   counter's growth into the ledger. `credit_wallets.spent_units` remembers how much of the
//!   counter the ledger holds, and the copy is a conditional update, so a repeated or raced
//!   flush writes nothing twice. A counter behind the ledger (Redis lost its data) is set back
//!   up to it: the ledger wins.
//! - **Expiry**: grants that expire soonest are consumed first; when a grant's time comes,
//!   [`flush::expire`] writes what it had left as an `expiry` entry (once: the grant is marked
//!   in the same transaction). It runs on the usage flush's beat, so a grant expires within
//!   `TOLLGATE_USAGE_FLUSH_MS` of its time, and gateways see it within the cache TTL.
//! - **Low balance**: a ledger entry that takes the balance below `low_balance_threshold`
//!   records a `credits.low_balance` event in the event log, once per crossing (the wallet
//!   remembers; a grant that lifts the balance re-arms it).
//! - **Staleness**: the spent counter is shared by every replica (Redis) or there is one replica
//!   (embedded), so deductions are exact everywhere at once. What was *granted* is read through
//!   the hot cache: the replica that took a grant sees it at once, the others within
//!   `TOLLGATE_CACHE_TTL_MS`.
//!
//! [`rates`]: what a unit of a metric costs; [`settings`]: the provider's credit settings;
//! [`wallet`]: an account's wallet as authrep sees it; [`issued`]: Apigee's issued credits; [`margins`]:
//! credits charged against upstream cost.

pub mod flush;
pub mod issued;
pub mod ledger;
pub mod margins;
pub mod rates;
pub mod settings;
pub mod wallet;

pub use flush::{expire, flush};
pub use ledger::{balance, grant, grants, transactions, welcome};
