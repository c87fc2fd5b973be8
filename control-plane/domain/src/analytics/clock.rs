//! Local calendar arithmetic in an IANA time zone, as 3scale's stats do it with ActiveSupport:
//! buckets begin at local hours, six-hour cycles (00/06/12/18), midnights and firsts of the
//! month, so a day in a zone with daylight saving has 23 or 25 hourly values, and a zone whose
//! offset is not whole hours (Asia/Kolkata, +05:30) has its hours begin at half past in UTC.
//!
//! A local time that does not exist (the hour skipped when clocks go forward) resolves to the
//! first instant after the gap; an ambiguous one (the hour repeated) to the earlier instant.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A bucket's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    Hour,
    /// Six hours: the buckets of a week.
    SixHours,
    Day,
    Month,
    /// One bucket for everything.
    Eternity,
}

impl Granularity {
    /// The names a request may give (`21600`, six hours, is only ever a period's default).
    pub fn parse(s: &str) -> Option<Granularity> {
        match s {
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            "month" => Some(Granularity::Month),
            "eternity" => Some(Granularity::Eternity),
            _ => None,
        }
    }

    /// As 3scale names it in answers (`21600` for six hours: a number in JSON).
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::SixHours => "21600",
            Granularity::Day => "day",
            Granularity::Month => "month",
            Granularity::Eternity => "eternity",
        }
    }
}

/// The instant a local wall time names in `tz` (see the module's note on gaps and overlaps).
pub fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(earlier, _) => earlier,
        // Inside a gap: read with the offset in force before it, as ActiveSupport does
        // (02:30 on the night clocks go from 02:00 to 03:00 is 03:30).
        LocalResult::None => {
            let before = tz.offset_from_utc_datetime(&(local - Duration::hours(3))).fix();
            tz.from_utc_datetime(&(local - Duration::seconds(i64::from(before.local_minus_utc()))))
        }
    }
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN)
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

/// The start of the bucket containing `t`.
pub fn beginning_of(g: Granularity, t: DateTime<Tz>) -> DateTime<Tz> {
    let tz = t.timezone();
    let local = t.naive_local();
    let date = local.date();
    match g {
        Granularity::Hour => {
            let hour = local.with_minute(0).and_then(|l| l.with_second(0)).unwrap_or(local);
            resolve(tz, hour.with_nanosecond(0).unwrap_or(hour))
        }
        Granularity::SixHours => resolve(
            tz,
            date.and_hms_opt(local.hour() / 6 * 6, 0, 0).unwrap_or(midnight(date)),
        ),
        Granularity::Day => resolve(tz, midnight(date)),
        Granularity::Month => resolve(tz, midnight(first_of_month(date.year(), date.month()))),
        Granularity::Eternity => t,
    }
}

/// The start of the bucket after the one that starts at `start`.
pub fn next(g: Granularity, start: DateTime<Tz>) -> DateTime<Tz> {
    let tz = start.timezone();
    let local = start.naive_local();
    match g {
        // Absolute hours: local hours stay whole across a change of offset by whole hours.
        Granularity::Hour => start + Duration::hours(1),
        Granularity::SixHours => beginning_of(g, resolve(tz, local + Duration::hours(6))),
        Granularity::Day => resolve(tz, midnight(local.date() + Duration::days(1))),
        Granularity::Month => resolve(tz, midnight(add_months(local.date(), 1))),
        Granularity::Eternity => start,
    }
}

/// The last second of the bucket containing `t`.
pub fn end_of(g: Granularity, t: DateTime<Tz>) -> DateTime<Tz> {
    next(g, beginning_of(g, t)) - Duration::seconds(1)
}

/// A calendar month later, the day clamped to the month's length (Jan 31 + 1 = Feb 28/29).
pub fn add_months(date: NaiveDate, months: i32) -> NaiveDate {
    let index = date.year() * 12 + date.month0() as i32 + months;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
    let first = first_of_month(year, month);
    let last_day = add_months_first(first).pred_opt().map(|d| d.day()).unwrap_or(28);
    NaiveDate::from_ymd_opt(year, month, date.day().min(last_day)).unwrap_or(first)
}

fn add_months_first(first: NaiveDate) -> NaiveDate {
    match first.month() {
        12 => first_of_month(first.year() + 1, 1),
        m => first_of_month(first.year(), m + 1),
    }
}

/// `t` moved by a calendar amount of local time (days and months), as ActiveSupport's
/// `1.day`/`1.month` do.
pub fn shift(t: DateTime<Tz>, days: i64, months: i32) -> DateTime<Tz> {
    let local = t.naive_local();
    let date = add_months(local.date(), months) + Duration::days(days);
    resolve(t.timezone(), date.and_time(local.time()))
}

/// The zone 3scale reports: IANA names, `Etc/UTC` for UTC.
pub fn zone_name(tz: Tz) -> &'static str {
    match tz {
        Tz::UTC | Tz::Etc__UTC | Tz::UCT | Tz::Etc__UCT | Tz::Universal | Tz::Zulu => "Etc/UTC",
        tz => tz.name(),
    }
}

/// An IANA zone name (case as written: `Europe/Madrid`, `UTC`).
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.trim().parse().ok()
}

/// A `since`/`until` parameter in `tz`: a date (`2024-01-15`, midnight), a local date and time
/// (`2024-01-15 10:00`, `2024-01-15T10:00:00`), or an instant with its offset
/// (`2024-01-15T10:00:00Z`, `…+01:00`), shown in `tz`.
pub fn parse_time(s: &str, tz: Tz) -> Option<DateTime<Tz>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&tz));
    }
    for format in ["%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&tz));
        }
    }
    if let Some(rest) = s.strip_suffix(" UTC").or_else(|| s.strip_suffix('Z')) {
        return parse_local(rest).map(|l| Utc.from_utc_datetime(&l).with_timezone(&tz));
    }
    parse_local(s).map(|l| resolve(tz, l))
}

fn parse_local(s: &str) -> Option<NaiveDateTime> {
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(midnight)
}

/// Rails' `xmlschema(0)`: `2009-12-10T19:00:00Z` in UTC, `…+01:00` elsewhere.
pub fn xmlschema(t: DateTime<Tz>) -> String {
    match t.offset().fix().local_minus_utc() {
        0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        _ => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    }
}

/// `TimeWithZone#to_s`: `2009-12-10 19:00:00 UTC`, `… +0100` elsewhere.
pub fn plain(t: DateTime<Tz>) -> String {
    match t.offset().fix().local_minus_utc() {
        0 => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        _ => t.format("%Y-%m-%d %H:%M:%S %z").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Tz {
        parse_zone(name).unwrap()
    }

    #[test]
    fn dates_and_times_parse_in_the_zone() {
        let madrid = zone("Europe/Madrid");
        assert_eq!(
            xmlschema(parse_time("2024-01-15", madrid).unwrap()),
            "2024-01-15T00:00:00+01:00"
        );
        assert_eq!(
            xmlschema(parse_time("2024-07-15 10:30", madrid).unwrap()),
            "2024-07-15T10:30:00+02:00"
        );
        assert_eq!(
            xmlschema(parse_time("2024-07-15T08:30:00Z", madrid).unwrap()),
            "2024-07-15T10:30:00+02:00"
        );
        assert_eq!(
            plain(parse_time("2009-12-10 19:00:00", zone("UTC")).unwrap()),
            "2009-12-10 19:00:00 UTC"
        );
        assert_eq!(
            plain(parse_time("2009-12-10", madrid).unwrap()),
            "2009-12-10 00:00:00 +0100"
        );
        assert_eq!(parse_time("yesterday", madrid), None);
        assert_eq!(parse_time("2024-13-45", madrid), None);
        // The skipped hour resolves to the first instant after it.
        assert_eq!(
            xmlschema(parse_time("2024-03-31 02:30", madrid).unwrap()),
            "2024-03-31T03:30:00+02:00"
        );
    }

    #[test]
    fn buckets_follow_the_local_clock() {
        let kolkata = zone("Asia/Kolkata");
        let t = parse_time("2024-05-10T10:47:00Z", kolkata).unwrap();
        let hour = beginning_of(Granularity::Hour, t);
        assert_eq!(hour.with_timezone(&Utc).to_rfc3339(), "2024-05-10T10:30:00+00:00");
        assert_eq!(
            beginning_of(Granularity::Day, t).with_timezone(&Utc).to_rfc3339(),
            "2024-05-09T18:30:00+00:00"
        );
        let madrid = zone("Europe/Madrid");
        let spring = parse_time("2024-03-31", madrid).unwrap();
        assert_eq!((next(Granularity::Day, spring) - spring).num_hours(), 23);
        let autumn = parse_time("2024-10-27", madrid).unwrap();
        assert_eq!((next(Granularity::Day, autumn) - autumn).num_hours(), 25);
        // Six-hour cycles begin at local 06:00 even on the short day.
        assert_eq!(
            xmlschema(next(Granularity::SixHours, spring)),
            "2024-03-31T06:00:00+02:00"
        );
        assert_eq!(
            xmlschema(end_of(Granularity::Month, parse_time("2024-02-10", madrid).unwrap())),
            "2024-02-29T23:59:59+01:00"
        );
    }

    #[test]
    fn calendar_shifts_clamp() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(add_months(d("2024-01-31"), 1), d("2024-02-29"));
        assert_eq!(add_months(d("2024-12-15"), 1), d("2025-01-15"));
        assert_eq!(add_months(d("2024-03-15"), -3), d("2023-12-15"));
        assert_eq!(zone_name(zone("UTC")), "Etc/UTC");
        assert_eq!(zone_name(zone("Asia/Kolkata")), "Asia/Kolkata");
    }
}
