//! Plan limits against a call's usage, as pure functions: usage flows up the metric hierarchy
//! (a method's hit is also a hit of `hits`), each limit becomes a counter op, and the stored
//! values come back as 3scale's usage reports.

use crate::counters::{Amount, Counter, Op, SERIES};
use crate::ids::MetricId;
use crate::periods::Period;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNode {
    pub id: MetricId,
    pub system_name: String,
    pub parent_id: Option<MetricId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimit {
    pub metric_id: MetricId,
    pub period: Period,
    pub max: i64,
}

/// A call's usage per metric, ancestors included.
pub type Usage = BTreeMap<MetricId, Amount>;

/// Usage per metric after adding each amount to the metric's ancestors (unless `flat`).
pub fn expand(usage: &[(MetricId, Amount)], metrics: &[MetricNode], flat: bool) -> Usage {
    let parent = |id: MetricId| metrics.iter().find(|m| m.id == id).and_then(|m| m.parent_id);
    let mut out = BTreeMap::new();
    for &(metric, amount) in usage {
        let mut current = Some(metric);
        // The depth bound guards against a cycle in stored data.
        for _ in 0..16 {
            let Some(id) = current else { break };
            let entry = out.entry(id).or_insert(Amount::Add(0));
            *entry = entry.plus(amount);
            current = if flat { None } else { parent(id) };
        }
    }
    out
}

/// Response codes (`log[code]`) are counted like metrics: the exact code and its class.
pub fn response_code_counters(code: u16) -> [Counter; 2] {
    // `code` is 100..=599 (parse_response_code), so its class fits a u8.
    [
        Counter::ResponseCode(code),
        Counter::ResponseClass(u8::try_from(code / 100).unwrap_or(0)),
    ]
}

/// `log[code]` as apisonator takes it: a three-digit HTTP status, else nothing is counted.
pub fn parse_response_code(raw: Option<&str>) -> Option<u16> {
    let raw = raw?.trim();
    (raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_digit()))
        .then(|| raw.parse().ok())
        .flatten()
        .filter(|c| (100..=599).contains(c))
}

/// Counter ops for one call: one per limit (nothing to add where the call does not touch the
/// metric, so that its value is read for the report), a month and a series counter
/// ([`SERIES`]) for every touched metric, which the usage tables, billing and analytics read,
/// and a series counter for the response code and its class, if the call logs one.
pub fn ops(limits: &[PlanLimit], usage: &Usage, codes: &[(u16, i64)], now: DateTime<Utc>) -> Vec<Op> {
    let op = |counter: Counter, period: Period, max: Option<i64>, amount: Amount| Op {
        counter,
        period,
        start: period.start(now).map(|s| s.timestamp()).unwrap_or(0),
        ttl: period.ttl_secs(now),
        amount,
        max,
        account: None,
    };
    let amount = |metric_id| usage.get(&metric_id).copied().unwrap_or(Amount::Add(0));
    let mut ops: Vec<Op> = limits
        .iter()
        .map(|l| op(Counter::Metric(l.metric_id), l.period, Some(l.max), amount(l.metric_id)))
        .collect();
    for &metric in usage.keys() {
        for period in [Period::Month, SERIES] {
            if !ops
                .iter()
                .any(|o| o.counter == Counter::Metric(metric) && o.period == period)
            {
                ops.push(op(Counter::Metric(metric), period, None, amount(metric)));
            }
        }
    }
    for &(code, n) in codes {
        for counter in response_code_counters(code) {
            match ops.iter_mut().find(|o| o.counter == counter) {
                Some(o) => o.amount = o.amount.plus(Amount::Add(n)),
                None => ops.push(op(counter, SERIES, None, Amount::Add(n))),
            }
        }
    }
    ops
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    #[serde(skip)]
    pub metric_id: MetricId,
    pub metric: String,
    pub period: &'static str,
    /// `YYYY-MM-DD HH:MM:SS +0000`; absent for eternity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_end: Option<String>,
    pub max_value: i64,
    pub current_value: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exceeded: bool,
    /// Unix seconds when the period ends; `None` for eternity. (JSON only: the filter's
    /// cache keeps quotas until then.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    #[serde(skip)]
    pub period_rank: Period,
}

/// apisonator's limit headers (`3scale-limit-remaining`, `-reset`, `-max-value`): among the
/// reports of the metrics this call uses (with their ancestors; all reports if it uses
/// nothing), the one allowing the fewest more identical calls (-1: not limited by it) — the
/// longer period on a tie. No report at all: remaining and reset are -1 and there is no max.
pub fn limit_headers(reports: &[UsageReport], usage: &Usage, now: i64) -> (i64, i64, Option<i64>) {
    let best = reports
        .iter()
        .filter(|r| usage.is_empty() || usage.contains_key(&r.metric_id))
        .map(|r| {
            let left = r.max_value - r.current_value;
            let used = usage.get(&r.metric_id).map_or(0, |a| a.units());
            // A call that uses none of the metric is not limited by it: -1.
            let remaining = if left <= 0 {
                0
            } else if used == 0 {
                -1
            } else {
                left / used
            };
            (remaining, r)
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.period_rank.cmp(&a.1.period_rank)));
    match best {
        None => (-1, -1, None),
        Some((remaining, r)) => (
            remaining,
            r.ends_at.map(|e| (e - now).max(0)).unwrap_or(-1),
            Some(r.max_value),
        ),
    }
}

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S +0000";

/// Reports for the limited ops, longest period first per metric, as 3scale orders them.
pub fn reports(ops: &[Op], values: &[i64], metrics: &[MetricNode], now: DateTime<Utc>) -> Vec<UsageReport> {
    let mut out: Vec<(MetricId, Period, UsageReport)> = ops
        .iter()
        .zip(values)
        .filter_map(|(op, value)| {
            let max = op.max?;
            let metric_id = op.counter.metric()?;
            let name = metrics
                .iter()
                .find(|m| m.id == metric_id)
                .map(|m| m.system_name.clone())?;
            Some((
                metric_id,
                op.period,
                UsageReport {
                    metric_id,
                    ends_at: op.period.end(now).map(|t| t.timestamp()),
                    period_rank: op.period,
                    metric: name,
                    period: op.period.as_str(),
                    period_start: op.period.start(now).map(|t| t.format(TIME_FORMAT).to_string()),
                    period_end: op.period.end(now).map(|t| t.format(TIME_FORMAT).to_string()),
                    max_value: max,
                    current_value: *value,
                    exceeded: *value > max,
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.into_iter().map(|(_, _, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64) -> MetricId {
        MetricId::new(id)
    }

    fn add(usage: &[(i64, i64)]) -> Vec<(MetricId, Amount)> {
        usage.iter().map(|&(id, n)| (m(id), Amount::Add(n))).collect()
    }

    #[test]
    fn sets_flow_up_and_codes_are_counted() {
        let now = DateTime::parse_from_rfc3339("2010-05-15T13:41:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let usage = expand(&[(m(2), Amount::Set(5)), (m(1), Amount::Add(1))], &metrics(), false);
        assert_eq!(usage, BTreeMap::from([(m(1), Amount::Set(6)), (m(2), Amount::Set(5))]));
        let ops = ops(&[], &BTreeMap::new(), &[(404, 1), (401, 2)], now);
        assert_eq!(ops.len(), 3);
        assert_eq!(
            (ops[0].counter, ops[1].counter, ops[2].counter),
            (
                Counter::ResponseCode(404),
                Counter::ResponseClass(4),
                Counter::ResponseCode(401)
            )
        );
        assert!(ops.iter().all(|o| o.period == SERIES));
        assert_eq!(
            (ops[0].amount, ops[1].amount, ops[2].amount),
            (Amount::Add(1), Amount::Add(3), Amount::Add(2))
        );
        for (raw, code) in [
            ("200", Some(200)),
            (" 503 ", Some(503)),
            ("2000", None),
            ("abc", None),
            ("099", None),
            ("", None),
        ] {
            assert_eq!(parse_response_code(Some(raw)), code, "{raw:?}");
        }
    }

    fn metrics() -> Vec<MetricNode> {
        vec![
            MetricNode {
                id: m(1),
                system_name: "hits".into(),
                parent_id: None,
            },
            MetricNode {
                id: m(2),
                system_name: "get_item".into(),
                parent_id: Some(m(1)),
            },
            MetricNode {
                id: m(3),
                system_name: "bytes".into(),
                parent_id: None,
            },
        ]
    }

    #[test]
    fn usage_flows_up_unless_flat() {
        let deep = expand(&add(&[(2, 3), (1, 1)]), &metrics(), false);
        assert_eq!(deep, BTreeMap::from([(m(1), Amount::Add(4)), (m(2), Amount::Add(3))]));
        let flat = expand(&add(&[(2, 3)]), &metrics(), true);
        assert_eq!(flat, BTreeMap::from([(m(2), Amount::Add(3))]));
        let cyclic = vec![MetricNode {
            id: m(1),
            system_name: "a".into(),
            parent_id: Some(m(1)),
        }];
        assert_eq!(
            expand(&add(&[(1, 1)]), &cyclic, false).get(&m(1)),
            Some(&Amount::Add(16)),
            "bounded, not endless"
        );
    }

    #[test]
    fn limit_headers_follow_apisonator() {
        // hits/hour=10, hits/day=100, at 22:59:59, a call using 11: remaining 0, reset 1, max 10.
        let now = DateTime::parse_from_rfc3339("2010-05-15T22:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        let limits = [
            PlanLimit {
                metric_id: m(1),
                period: Period::Hour,
                max: 10,
            },
            PlanLimit {
                metric_id: m(1),
                period: Period::Day,
                max: 100,
            },
        ];
        let usage = expand(&add(&[(1, 11)]), &metrics(), false);
        let ops = ops(&limits, &usage, &[], now);
        let r = reports(&ops, &[0, 0, 0], &metrics(), now);
        assert_eq!(limit_headers(&r, &usage, now.timestamp()), (0, 1, Some(10)));
        // Room for 9 more calls of 10 a day, 1 left an hour: the hour decides.
        let usage = expand(&add(&[(1, 1)]), &metrics(), false);
        let r = reports(&ops, &[9, 10, 0], &metrics(), now);
        assert_eq!(limit_headers(&r, &usage, now.timestamp()), (1, 1, Some(10)));
        // A call not using the limited metric is not limited by it.
        let usage = expand(&add(&[(3, 1)]), &metrics(), false);
        assert_eq!(limit_headers(&r, &usage, now.timestamp()), (-1, -1, None));
        assert_eq!(limit_headers(&[], &BTreeMap::new(), 0), (-1, -1, None));
    }

    #[test]
    fn limits_become_ops_and_reports() {
        let now = DateTime::parse_from_rfc3339("2010-05-15T13:41:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let limits = [
            PlanLimit {
                metric_id: m(1),
                period: Period::Day,
                max: 100,
            },
            PlanLimit {
                metric_id: m(1),
                period: Period::Month,
                max: 10000,
            },
            PlanLimit {
                metric_id: m(3),
                period: Period::Eternity,
                max: 5,
            },
        ];
        let usage = expand(&add(&[(2, 1)]), &metrics(), false);
        let ops = ops(&limits, &usage, &[], now);
        // 3 limits + month/series for get_item + series for hits (its month is a limit already).
        assert_eq!(ops.len(), 6);
        assert_eq!(ops[2].amount, Amount::Add(0), "bytes is limited but untouched");
        let reports = reports(&ops, &[3, 6, 7, 0, 0, 0], &metrics(), now);
        assert_eq!(reports.len(), 3);
        assert_eq!(
            (reports[0].period, reports[1].period),
            ("month", "day"),
            "longest first"
        );
        assert_eq!(reports[1].period_start.as_deref(), Some("2010-05-15 00:00:00 +0000"));
        assert_eq!(reports[1].period_end.as_deref(), Some("2010-05-16 00:00:00 +0000"));
        assert!(reports[2].exceeded && reports[2].period_start.is_none());
    }
}
