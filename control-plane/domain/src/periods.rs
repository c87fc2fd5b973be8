//! Calendar periods in UTC, as 3scale counts limits: a minute, hour, day, week (from Monday
//! 00:00), month (from the 1st), year, or eternity. A counter belongs to the period that
//! contains the call; it resets when the next one starts.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// Fifteen minutes: not a limit period (3scale has none), the resolution of the usage
    /// series, so that analytics are exact in zones whose offset is not whole hours.
    Quarter,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
    Eternity,
}

impl Period {
    /// Every period's name, shortest first (the order limits are listed in).
    pub const WORDS: &'static [&'static str] = &["minute", "hour", "day", "week", "month", "year", "eternity"];

    /// Longest first, the order 3scale reports them in.
    pub const DESCENDING: [Period; 7] = [
        Period::Eternity,
        Period::Year,
        Period::Month,
        Period::Week,
        Period::Day,
        Period::Hour,
        Period::Minute,
    ];

    /// A limit's period by name (a quarter hour is no limit period).
    pub fn parse(s: &str) -> Option<Period> {
        Period::DESCENDING.into_iter().find(|p| p.as_str() == s)
    }

    /// Any period by name, the series' quarter hour included: how stores read their keys back.
    pub fn parse_any(s: &str) -> Option<Period> {
        Period::parse(s).or((s == "quarter").then_some(Period::Quarter))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Quarter => "quarter",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::Eternity => "eternity",
        }
    }

    /// The start of the period containing `t`; `None` for eternity.
    pub fn start(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let date = t.date_naive();
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|n| Utc.from_utc_datetime(&n));
        match self {
            Period::Quarter => t
                .with_minute(t.minute() / 15 * 15)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0)),
            Period::Minute => t.with_second(0).and_then(|t| t.with_nanosecond(0)),
            Period::Hour => t
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0)),
            Period::Day => midnight(date),
            Period::Week => midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday()))),
            Period::Month => NaiveDate::from_ymd_opt(date.year(), date.month(), 1).and_then(midnight),
            Period::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).and_then(midnight),
            Period::Eternity => None,
        }
    }

    /// The start of the next period (the end of this one); `None` for eternity.
    pub fn end(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.start(t)?;
        match self {
            Period::Quarter => Some(start + Duration::minutes(15)),
            Period::Minute => Some(start + Duration::minutes(1)),
            Period::Hour => Some(start + Duration::hours(1)),
            Period::Day => Some(start + Duration::days(1)),
            Period::Week => Some(start + Duration::weeks(1)),
            Period::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|n| Utc.from_utc_datetime(&n))
            }
            Period::Year => NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| Utc.from_utc_datetime(&n)),
            Period::Eternity => None,
        }
    }

    /// How long a counter of the period containing `t` must live: until the period ends, plus
    /// a day of slack (reports may arrive late); `None`: forever.
    pub fn ttl_secs(self, t: DateTime<Utc>) -> Option<u64> {
        let end = self.end(t)?;
        Some((end - t).num_seconds().max(0) as u64 + 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_boundaries() {
        let t = at("2010-05-15T13:41:30Z"); // a Saturday
        assert_eq!(Period::Minute.start(t), Some(at("2010-05-15T13:41:00Z")));
        assert_eq!(Period::Hour.end(t), Some(at("2010-05-15T14:00:00Z")));
        assert_eq!(Period::Quarter.start(t).map(|s| s.minute() % 15), Some(0));
        assert_eq!(
            Period::Quarter
                .end(t)
                .zip(Period::Quarter.start(t))
                .map(|(e, s)| (e - s).num_minutes()),
            Some(15)
        );
        assert_eq!(Period::Day.start(t), Some(at("2010-05-15T00:00:00Z")));
        assert_eq!(
            Period::Week.start(t),
            Some(at("2010-05-10T00:00:00Z")),
            "weeks start on Monday"
        );
        assert_eq!(Period::Month.start(t), Some(at("2010-05-01T00:00:00Z")));
        assert_eq!(
            Period::Month.end(at("2010-12-31T23:59:59Z")),
            Some(at("2011-01-01T00:00:00Z"))
        );
        assert_eq!(Period::Year.end(t), Some(at("2011-01-01T00:00:00Z")));
        assert_eq!(Period::Eternity.start(t), None);
        assert_eq!(Period::Eternity.ttl_secs(t), None);
        assert_eq!(Period::Minute.ttl_secs(t), Some(30 + 86_400));
    }

    proptest! {
        #[test]
        fn every_instant_lies_in_its_period(secs in 0i64..4_102_444_800, p in 0usize..6) {
            let t = Utc.timestamp_opt(secs, 0).unwrap();
            let period = Period::DESCENDING[p + 1];
            let (start, end) = (period.start(t).unwrap(), period.end(t).unwrap());
            prop_assert!(start <= t && t < end);
            // The next period starts where this one ends.
            prop_assert_eq!(period.start(end), Some(end));
        }
    }
}
