//! Timestamps as the database stores them: RFC 3339 text in UTC, which sorts by time.

use chrono::{SecondsFormat, Utc};

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}
