//! Timestamps as the database stores them: RFC 3339 text in UTC, which sorts by time.

use chrono::{SecondsFormat, Utc};

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The day a stored date or time (`2026-11-01`, `2026-11-01T09:00:00Z`) falls on.
pub fn day(stored: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(stored.get(..10).unwrap_or(stored), "%Y-%m-%d").ok()
}
