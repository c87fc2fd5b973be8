//! Analytics (3scale Part V): which window a stats request covers and how stored usage adds
//! up into its buckets, in the provider's time zone or any IANA zone.
//!
//! - [`clock`]: local calendar arithmetic (hours, six-hour cycles, midnights, months).
//! - [`window`]: 3scale's stats parameters, defaults, caps and messages.
//! - [`series`]: usage per hour and quarter, summed into buckets exactly.

pub mod clock;
pub mod series;
pub mod window;

pub use clock::Granularity;
pub use series::{fill, QuarterRow};
pub use window::{change, PeriodName, StatsError, TopWindow, Window, WindowParams};
