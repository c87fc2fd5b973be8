//! What a stats request asks for — the time window, its buckets and zone — read from 3scale's
//! parameters with 3scale's defaults and messages (porta `Stats::Views::Usage`,
//! `Stats::Base`, the `3scale_time_range` gem):
//!
//! - with `period`: `since` (or now less one period) for one calendar period, `until`
//!   ignored, both ends rounded out to the granularity (the period's default: hour for a day,
//!   six hours for a week, day for a month, month for a year);
//! - without: `granularity`, `since` and `until`, rounded out likewise;
//! - at most 90 days by hour, a year by day, 10 years by month.
//!
//! Where porta answers 500 (a granularity it cannot read with a period, a date it cannot
//! parse, an unknown zone without `since`), this answers 400 with what was wrong.

use super::clock::{self, beginning_of, end_of, next, parse_time, parse_zone, shift, Granularity};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;

/// A stats request's `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodName {
    Day,
    Week,
    Month,
    Year,
    Eternity,
}

impl PeriodName {
    pub fn parse(s: &str) -> Option<PeriodName> {
        match s {
            "day" => Some(PeriodName::Day),
            "week" => Some(PeriodName::Week),
            "month" => Some(PeriodName::Month),
            "year" => Some(PeriodName::Year),
            "eternity" => Some(PeriodName::Eternity),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodName::Day => "day",
            PeriodName::Week => "week",
            PeriodName::Month => "month",
            PeriodName::Year => "year",
            PeriodName::Eternity => "eternity",
        }
    }

    /// The granularity a period is shown in unless the request names one.
    pub fn default_granularity(self) -> Granularity {
        match self {
            PeriodName::Day => Granularity::Hour,
            PeriodName::Week => Granularity::SixHours,
            PeriodName::Month => Granularity::Day,
            PeriodName::Year => Granularity::Month,
            PeriodName::Eternity => Granularity::Eternity,
        }
    }

    /// One period later, on the local calendar (days, months).
    fn length(self) -> (i64, i32) {
        match self {
            PeriodName::Day => (1, 0),
            PeriodName::Week => (7, 0),
            PeriodName::Month => (0, 1),
            PeriodName::Year => (0, 12),
            PeriodName::Eternity => (0, 0),
        }
    }
}

/// A request 3scale's stats refuse. [`StatsError::Missing`] is answered as plain text whatever
/// the format; the others as `{"error": "…"}` (or `<error>…</error>`), all with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("Required parameter missing: {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Bad(String),
}

fn bad(message: impl Into<String>) -> StatsError {
    StatsError::Bad(message.into())
}

/// The parameters that shape a window, as given (`None` or blank: not given).
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowParams<'a> {
    pub period: Option<&'a str>,
    pub granularity: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub skip_change: Option<&'a str>,
}

fn given(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// The window a usage request covers, its buckets in UTC seconds (`[start, end)`), and the
/// zone it is shown in.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `None` in since/until mode.
    pub period: Option<PeriodName>,
    pub granularity: Granularity,
    pub tz: Tz,
    pub since: DateTime<Tz>,
    /// The window's last second.
    pub until: DateTime<Tz>,
    pub buckets: Vec<(i64, i64)>,
    /// `previous_total` and `change` left out (the default).
    pub skip_change: bool,
}

const DAY: i64 = 86_400;
/// ActiveSupport's year: 365.2425 days.
const YEAR: i64 = 31_556_952;

/// The longest window a granularity may show, and how 3scale names it.
fn cap(g: Granularity) -> Option<(i64, &'static str)> {
    match g {
        Granularity::Hour => Some((90 * DAY, "90 days")),
        Granularity::Day => Some((YEAR, "1 year")),
        Granularity::Month => Some((10 * YEAR, "10 years")),
        Granularity::SixHours | Granularity::Eternity => None,
    }
}

const GRANULARITY_LIST: &str = "[:eternity, :month, :day, 6 hours, :hour]";
const PERIOD_LIST: &str = r#"["eternity", "year", "month", "week", "day"]"#;
const DATE_FORMAT: &str = "Date parameters should have valid date/time format.";

/// The zone a request asks for, else the provider's (`default`), else UTC. An unknown name is
/// read as UTC when the request gives `since`, as porta does; without `since` porta fails, and
/// this names the zone instead.
fn zone(params: &WindowParams, default: Tz) -> Result<Tz, StatsError> {
    match given(params.timezone) {
        None => Ok(default),
        Some(name) => match parse_zone(name) {
            Some(tz) => Ok(tz),
            None if given(params.since).is_some() => Ok(Tz::UTC),
            None => Err(bad(format!("Time zone {name:?} is not a known IANA time zone name"))),
        },
    }
}

fn time(s: &str, tz: Tz) -> Result<DateTime<Tz>, StatsError> {
    parse_time(s, tz).ok_or_else(|| bad(DATE_FORMAT))
}

impl Window {
    /// Reads a usage request's window. `default_zone` is the provider account's; `now` the
    /// clock's.
    pub fn parse(params: &WindowParams, default_zone: Tz, now: DateTime<Utc>) -> Result<Window, StatsError> {
        let period = given(params.period);
        if period.is_none() {
            given(params.granularity).ok_or(StatsError::Missing("granularity"))?;
            given(params.since).ok_or(StatsError::Missing("since"))?;
        }
        let tz = zone(params, default_zone)?;
        let skip_change = params.skip_change.map(str::trim) != Some("false");
        let (period, granularity, since, until) = match period {
            Some(name) => {
                let period = PeriodName::parse(name)
                    .ok_or_else(|| bad(format!("Period must be one of {PERIOD_LIST} not {name:?}")))?;
                let granularity = match given(params.granularity) {
                    None => period.default_granularity(),
                    Some(g) => match (period, Granularity::parse(g)) {
                        (PeriodName::Eternity, Some(Granularity::Eternity)) => Granularity::Eternity,
                        (PeriodName::Eternity, _) => {
                            return Err(bad("Only 'eternity' granularity is supported for period 'eternity'"))
                        }
                        (_, Some(Granularity::Eternity)) => {
                            return Err(bad("Granularity 'eternity' is only supported for period 'eternity'"))
                        }
                        (_, Some(g)) => g,
                        (_, None) => {
                            return Err(bad(format!("Granularity must be one of {GRANULARITY_LIST}, not {g}")))
                        }
                    },
                };
                if period == PeriodName::Eternity {
                    return Ok(Window::eternity(tz, now));
                }
                let (days, months) = period.length();
                let since = match given(params.since) {
                    Some(s) => time(s, tz)?,
                    None => shift(now.with_timezone(&tz), -days, -months),
                };
                let until = shift(since, days, months) - Duration::seconds(1);
                (Some(period), granularity, since, end_of_minute(until))
            }
            None => {
                let g = given(params.granularity).unwrap_or_default();
                let granularity = match Granularity::parse(g) {
                    Some(Granularity::Eternity) => {
                        return Err(bad("Granularity 'eternity' is only supported for period 'eternity'"))
                    }
                    Some(g) => g,
                    None => return Err(bad(format!("Granularity must be one of {GRANULARITY_LIST}, not {g}"))),
                };
                let until = given(params.until)
                    .ok_or_else(|| bad("You need to specify either 'range' or 'since' and 'until'"))?;
                let since = time(given(params.since).unwrap_or_default(), tz)?;
                let until = time(until, tz)?;
                if until < since {
                    return Err(bad("'until' must not be before 'since'"));
                }
                (None, granularity, since, until)
            }
        };
        let since = beginning_of(granularity, since);
        let until = end_of(granularity, until);
        if let Some((longest, name)) = cap(granularity) {
            if (until - since).num_seconds() + 1 > longest {
                return Err(bad(format!("Time range for the granularity must be less than {name}")));
            }
        }
        Ok(Window {
            period,
            granularity,
            tz,
            buckets: buckets(granularity, since, until),
            since,
            until,
            skip_change,
        })
    }

    /// `period=eternity`: from 1970 to the end of today (UTC), one value, never a change.
    fn eternity(tz: Tz, now: DateTime<Utc>) -> Window {
        let since = Utc.timestamp_opt(0, 0).single().unwrap_or(now).with_timezone(&tz);
        let until = end_of(Granularity::Day, now.with_timezone(&Tz::UTC)).with_timezone(&tz);
        Window {
            period: Some(PeriodName::Eternity),
            granularity: Granularity::Eternity,
            tz,
            buckets: vec![(since.timestamp(), until.timestamp() + 1)],
            since,
            until,
            skip_change: true,
        }
    }

    /// The whole window, `[start, end)` in UTC seconds.
    pub fn range(&self) -> (i64, i64) {
        (self.since.timestamp(), self.until.timestamp() + 1)
    }

    /// The window of the same length that ends where this one begins, for `previous_total`.
    pub fn previous(&self) -> Option<(i64, i64)> {
        let (start, end) = self.range();
        (!self.skip_change && self.period != Some(PeriodName::Eternity)).then(|| (start - (end - start), start))
    }
}

fn end_of_minute(t: DateTime<Tz>) -> DateTime<Tz> {
    let second = t.timestamp().rem_euclid(60);
    t + Duration::seconds(59 - second)
}

/// The buckets from `since` to `until` (its last second), in UTC seconds.
fn buckets(g: Granularity, since: DateTime<Tz>, until: DateTime<Tz>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = since;
    while start <= until {
        let end = next(g, start);
        if end <= start {
            break;
        }
        out.push((start.timestamp(), end.timestamp()));
        start = end;
    }
    out
}

/// The window of a top-applications request: `period` and `since` required, `since` snapped
/// to the start of its calendar period (a week from Monday), one whole period.
#[derive(Debug, Clone, PartialEq)]
pub struct TopWindow {
    pub period: PeriodName,
    pub tz: Tz,
    pub since: DateTime<Tz>,
    pub until: DateTime<Tz>,
}

impl TopWindow {
    pub fn parse(params: &WindowParams, default_zone: Tz) -> Result<TopWindow, StatsError> {
        let name = given(params.period).ok_or(StatsError::Missing("period"))?;
        let since = given(params.since).ok_or(StatsError::Missing("since"))?;
        let period =
            PeriodName::parse(name).ok_or_else(|| bad(format!("Period must be one of {PERIOD_LIST} not {name:?}")))?;
        if period == PeriodName::Eternity {
            return Err(bad("Period 'eternity' is not supported for top applications"));
        }
        let tz = zone(params, default_zone)?;
        let given_since = time(since, tz)?;
        let start = match period {
            PeriodName::Day => beginning_of(Granularity::Day, given_since),
            PeriodName::Week => {
                let day = beginning_of(Granularity::Day, given_since);
                let back = chrono::Datelike::weekday(&day.naive_local()).num_days_from_monday();
                shift(day, -i64::from(back), 0)
            }
            PeriodName::Month => beginning_of(Granularity::Month, given_since),
            PeriodName::Year => {
                let month = beginning_of(Granularity::Month, given_since);
                let back = chrono::Datelike::month0(&month.naive_local()) as i32;
                shift(month, 0, -back)
            }
            PeriodName::Eternity => given_since,
        };
        let (days, months) = period.length();
        let until = shift(start, days, months) - Duration::seconds(1);
        Ok(TopWindow {
            period,
            tz,
            since: start,
            until,
        })
    }

    pub fn range(&self) -> (i64, i64) {
        (self.since.timestamp(), self.until.timestamp() + 1)
    }
}

/// 3scale's `percentage_change_from`: 0 when equal (both 0 too), 100 from nothing, else the
/// change as a percentage of the previous total. A ratio shown to people, not money.
pub fn change(total: i64, previous: i64) -> f64 {
    if total == previous {
        0.0
    } else if previous == 0 {
        100.0
    } else {
        (total - previous) as f64 / previous as f64 * 100.0
    }
}

/// The zone name in answers.
pub fn zone_name(tz: Tz) -> &'static str {
    clock::zone_name(tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::clock::xmlschema;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(params: WindowParams, now: &str) -> Result<Window, StatsError> {
        Window::parse(&params, Tz::UTC, utc(now))
    }

    fn p<'a>(period: &'a str, since: &'a str, tz: &'a str) -> WindowParams<'a> {
        WindowParams {
            period: Some(period),
            since: Some(since).filter(|s| !s.is_empty()),
            timezone: Some(tz).filter(|s| !s.is_empty()),
            ..Default::default()
        }
    }

    #[test]
    fn a_day_without_since_is_the_last_25_hours() {
        // porta's services_test: 2009-12-04 11:12 UTC, Madrid.
        let w = window(p("day", "", "Europe/Madrid"), "2009-12-04T11:12:00Z").unwrap();
        assert_eq!(xmlschema(w.since), "2009-12-03T12:00:00+01:00");
        assert_eq!(xmlschema(w.until), "2009-12-04T12:59:59+01:00");
        assert_eq!(w.buckets.len(), 25);
        assert_eq!(w.granularity, Granularity::Hour);
    }

    #[test]
    fn a_month_without_since_is_31_days() {
        // porta's clients_test: 2009-12-13 00:00 UTC, Madrid.
        let w = window(p("month", "", "Europe/Madrid"), "2009-12-13T00:00:00Z").unwrap();
        assert_eq!(xmlschema(w.since), "2009-11-13T00:00:00+01:00");
        assert_eq!(xmlschema(w.until), "2009-12-13T23:59:59+01:00");
        assert_eq!(w.buckets.len(), 31);
    }

    #[test]
    fn periods_from_since() {
        let now = "2026-01-01T00:00:00Z";
        assert_eq!(window(p("day", "2020-03-19", ""), now).unwrap().buckets.len(), 24);
        let year = window(p("year", "2010-01-01", "Atlantic/Azores"), now).unwrap();
        assert_eq!(year.buckets.len(), 12);
        assert_eq!(xmlschema(year.until), "2010-12-31T23:59:59-01:00");
        assert_eq!(window(p("year", "2024-03-15", ""), now).unwrap().buckets.len(), 13);
        assert_eq!(window(p("month", "2024-01-15", ""), now).unwrap().buckets.len(), 31);
        let week = window(p("week", "2024-01-15", "Europe/Madrid"), now).unwrap();
        assert_eq!((week.buckets.len(), week.granularity.name()), (28, "21600"));
        let eternity = window(p("eternity", "", ""), "2026-05-10T10:00:00Z").unwrap();
        assert_eq!(eternity.buckets.len(), 1);
        assert_eq!(xmlschema(eternity.until), "2026-05-10T23:59:59Z");
        assert!(eternity.previous().is_none());
    }

    #[test]
    fn daylight_saving_days_have_23_and_25_hours() {
        let now = "2026-01-01T00:00:00Z";
        assert_eq!(
            window(p("day", "2024-03-31", "Europe/Madrid"), now)
                .unwrap()
                .buckets
                .len(),
            23
        );
        assert_eq!(
            window(p("day", "2024-10-27", "Europe/Madrid"), now)
                .unwrap()
                .buckets
                .len(),
            25
        );
        assert_eq!(
            window(p("day", "2024-03-10", "America/New_York"), now)
                .unwrap()
                .buckets
                .len(),
            23
        );
    }

    #[test]
    fn half_hour_zones_have_half_hour_boundaries() {
        let w = window(p("day", "2024-05-10", "Asia/Kolkata"), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(w.buckets.len(), 24);
        assert_eq!(w.buckets[0].0, utc("2024-05-09T18:30:00Z").timestamp());
        let nepal = window(p("day", "2024-05-10", "Asia/Kathmandu"), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(nepal.buckets[0].0, utc("2024-05-09T18:15:00Z").timestamp());
    }

    #[test]
    fn since_until_mode() {
        let w = window(
            WindowParams {
                granularity: Some("hour"),
                since: Some("2020-03-19"),
                until: Some("2020-03-21"),
                ..Default::default()
            },
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!((w.buckets.len(), w.period), (49, None));
    }

    #[test]
    fn porta_messages() {
        let now = "2026-01-01T00:00:00Z";
        let err = |params| window(params, now).unwrap_err().to_string();
        assert_eq!(err(WindowParams::default()), "Required parameter missing: granularity");
        assert_eq!(
            err(WindowParams {
                granularity: Some("day"),
                since: Some(""),
                ..Default::default()
            }),
            "Required parameter missing: since"
        );
        assert_eq!(
            err(p("XSScript", "", "")),
            r#"Period must be one of ["eternity", "year", "month", "week", "day"] not "XSScript""#
        );
        let with_gran = |period, g| WindowParams {
            period: Some(period),
            granularity: Some(g),
            ..Default::default()
        };
        assert_eq!(
            err(with_gran("eternity", "day")),
            "Only 'eternity' granularity is supported for period 'eternity'"
        );
        assert_eq!(
            err(with_gran("day", "eternity")),
            "Granularity 'eternity' is only supported for period 'eternity'"
        );
        assert_eq!(
            err(with_gran("day", "minute")),
            "Granularity must be one of [:eternity, :month, :day, 6 hours, :hour], not minute"
        );
        let range = |g, since, until| WindowParams {
            granularity: Some(g),
            since: Some(since),
            until,
            ..Default::default()
        };
        assert_eq!(
            err(range("day", "2020-01-01", None)),
            "You need to specify either 'range' or 'since' and 'until'"
        );
        assert_eq!(
            err(range("hour", "2020-01-01", Some("2020-04-15"))),
            "Time range for the granularity must be less than 90 days"
        );
        assert_eq!(
            err(range("day", "2020-01-01", Some("2021-03-01"))),
            "Time range for the granularity must be less than 1 year"
        );
        assert_eq!(
            err(range("month", "2000-01-01", Some("2021-03-01"))),
            "Time range for the granularity must be less than 10 years"
        );
        assert_eq!(
            err(range("day", "last tuesday", Some("2021-03-01"))),
            "Date parameters should have valid date/time format."
        );
        assert!(err(p("day", "", "Mars/Olympus")).contains("Mars/Olympus"));
        // A year by day over a leap year is one day too long.
        assert!(window(
            WindowParams {
                period: Some("year"),
                granularity: Some("day"),
                since: Some("2024-01-01"),
                ..Default::default()
            },
            now
        )
        .is_err());
        // An unknown zone with `since` is read as UTC, as porta does.
        assert_eq!(window(p("day", "2020-03-19", "Mars/Olympus"), now).unwrap().tz, Tz::UTC);
    }

    #[test]
    fn previous_period_and_change() {
        let mut w = window(p("day", "2020-03-19", ""), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(w.previous(), None, "skipped by default");
        w.skip_change = false;
        let (start, end) = w.range();
        assert_eq!(w.previous(), Some((start - 86_400, start)));
        assert_eq!(end - start, 86_400);
        assert_eq!(change(0, 0), 0.0);
        assert_eq!(change(5, 0), 100.0);
        assert_eq!(change(3, 1), 200.0);
        assert_eq!(change(20, 40), -50.0);
    }

    #[test]
    fn top_windows_snap_to_the_calendar() {
        let top = |period, since| {
            TopWindow::parse(
                &WindowParams {
                    period: Some(period),
                    since: Some(since),
                    ..Default::default()
                },
                Tz::UTC,
            )
        };
        let month = top("month", "2009-12-13").unwrap();
        assert_eq!(
            (xmlschema(month.since), xmlschema(month.until)),
            ("2009-12-01T00:00:00Z".into(), "2009-12-31T23:59:59Z".into())
        );
        let week = top("week", "2024-01-17").unwrap();
        assert_eq!(xmlschema(week.since), "2024-01-15T00:00:00Z");
        assert_eq!(
            xmlschema(top("year", "2024-05-05").unwrap().since),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            TopWindow::parse(&WindowParams::default(), Tz::UTC).unwrap_err(),
            StatsError::Missing("period")
        );
    }
}
