//! What Tollgate tells people, decided without I/O: the event catalogue (3scale's webhook
//! events and Tollgate's own), 3scale's sixteen `*_on` switches as event types, the retry
//! schedule of a delivery, usage-limit alert levels and the provider users' notification
//! preferences with the section each one needs.
//!
//! Delivery itself (outbox, HTTP, SMTP) lives at the edges; the rules live here so that they
//! are unit- and property-tested.

use crate::access::Section;
use crate::periods::Period;
use crate::Invalid;
use rust_decimal::Decimal;

/// 3scale's webhook switches, in its schema order, with the event type each one enables.
pub const THREESCALE_SWITCHES: [(&str, &str); 16] = [
    ("account_created_on", "account.created"),
    ("account_updated_on", "account.updated"),
    ("account_deleted_on", "account.deleted"),
    ("user_created_on", "user.created"),
    ("user_updated_on", "user.updated"),
    ("user_deleted_on", "user.deleted"),
    ("application_created_on", "application.created"),
    ("application_updated_on", "application.updated"),
    ("application_deleted_on", "application.deleted"),
    ("account_plan_changed_on", "account.plan_changed"),
    ("application_plan_changed_on", "application.plan_changed"),
    ("application_user_key_updated_on", "application.user_key_updated"),
    ("application_key_created_on", "application.key_created"),
    ("application_key_deleted_on", "application.key_deleted"),
    ("application_suspended_on", "application.suspended"),
    ("application_key_updated_on", "application.key_updated"),
];

/// Tollgate's own events (billing, credits, alerts, messages), beside 3scale's.
pub const TOLLGATE_EVENTS: [&str; 14] = [
    "invoice.issued",
    "invoice.finalized",
    "invoice.paid",
    "invoice.failed",
    "invoice.cancelled",
    "invoice.charged",
    "invoice.charge_failed",
    "invoice.charge_failed_will_retry",
    "credits.low_balance",
    "credits.granted",
    "limit.alert",
    "contract.trial_ending",
    "credit_card.expiring",
    "message.sent",
];

/// Whether `t` is an event type an endpoint may subscribe to (`*`: every one).
pub fn is_event_type(t: &str) -> bool {
    t == "*" || THREESCALE_SWITCHES.iter().any(|(_, e)| *e == t) || TOLLGATE_EVENTS.contains(&t)
}

/// The 3scale shape of a catalog event: `application.key_created` is type `application`,
/// action `key_created`. `None` for Tollgate's own events.
pub fn threescale_shape(event_type: &str) -> Option<(&str, &str)> {
    THREESCALE_SWITCHES
        .iter()
        .find(|(_, e)| *e == event_type)
        .and_then(|(_, e)| e.split_once('.'))
}

/// An endpoint's subscription: every event, or the listed types.
pub fn subscribed(types: &[String], event_type: &str) -> bool {
    types.iter().any(|t| t == "*" || t == event_type)
}

/// Event types from a form's list, each checked.
pub fn parse_event_types(values: &[&str]) -> Result<Vec<String>, Invalid> {
    let mut out: Vec<String> = Vec::new();
    for v in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if !is_event_type(v) {
            return Err(Invalid::field("event_types", format!("`{v}` is not an event type")));
        }
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    if out.is_empty() {
        return Err(Invalid::field("event_types", "can't be blank"));
    }
    Ok(out)
}

/// How deliveries are retried: exponential backoff from a base, capped, with jitter, for a
/// number of attempts. The default (30 s base, 24 attempts) keeps trying for more than a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 30_000,
            max_attempts: 24,
        }
    }
}

/// The longest wait, in bases (two hours at the default base).
const CAP_BASES: u64 = 240;
/// Jitter: the wait is 80 % to 120 % of the nominal one.
pub const JITTER_PERMILLE: u64 = 400;

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt (1-based), `jitter` in
    /// `0..JITTER_PERMILLE` picking where in the 80–120 % band it falls. `None`: give up.
    pub fn next_delay_ms(&self, failures: u32, jitter: u64) -> Option<u64> {
        if failures == 0 || failures >= self.max_attempts {
            return None;
        }
        let nominal = self
            .base_ms
            .saturating_mul(1u64 << (failures - 1).min(40))
            .min(self.base_ms.saturating_mul(CAP_BASES));
        let factor = 800 + jitter.min(JITTER_PERMILLE);
        Some(nominal.saturating_mul(factor) / 1000)
    }

    /// The shortest time the policy keeps trying (every jitter at its lowest).
    pub fn min_span_ms(&self) -> u64 {
        (1..self.max_attempts).filter_map(|n| self.next_delay_ms(n, 0)).sum()
    }
}

/// 3scale's alert levels (`Alert::ALERT_LEVELS`), in percent of a limit.
pub const ALERT_LEVELS: [u16; 8] = [50, 80, 90, 100, 120, 150, 200, 300];
/// At and above this level an alert is a violation.
pub const VIOLATION_LEVEL: u16 = 100;

/// A service's `notification_settings`: which levels alert whom, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationSettings {
    pub web_provider: Vec<u16>,
    pub email_provider: Vec<u16>,
    pub web_buyer: Vec<u16>,
    pub email_buyer: Vec<u16>,
}

impl NotificationSettings {
    pub const KEYS: [&'static str; 4] = ["web_provider", "email_provider", "web_buyer", "email_buyer"];

    /// One list from a form's values. A blank value is 3scale's hidden form field (it reads
    /// as 0 there) and is skipped; anything else must be one of [`ALERT_LEVELS`].
    pub fn parse_levels(key: &str, values: &[&str]) -> Result<Vec<u16>, Invalid> {
        let mut levels = Vec::new();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty() && *v != "0") {
            match v.parse::<u16>().ok().filter(|l| ALERT_LEVELS.contains(l)) {
                Some(l) if !levels.contains(&l) => levels.push(l),
                Some(_) => {}
                None => {
                    return Err(Invalid::field(
                        &format!("notification_settings[{key}]"),
                        format!("`{v}` is not one of 50, 80, 90, 100, 120, 150, 200, 300"),
                    ))
                }
            }
        }
        levels.sort_unstable();
        Ok(levels)
    }

    pub fn list(&self, key: &str) -> &[u16] {
        match key {
            "web_provider" => &self.web_provider,
            "email_provider" => &self.email_provider,
            "web_buyer" => &self.web_buyer,
            _ => &self.email_buyer,
        }
    }

    pub fn list_mut(&mut self, key: &str) -> &mut Vec<u16> {
        match key {
            "web_provider" => &mut self.web_provider,
            "email_provider" => &mut self.email_provider,
            "web_buyer" => &mut self.web_buyer,
            _ => &mut self.email_buyer,
        }
    }

    /// Every level someone is told about, ascending.
    pub fn levels(&self) -> Vec<u16> {
        let mut all: Vec<u16> = Self::KEYS.iter().flat_map(|k| self.list(k).iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn is_empty(&self) -> bool {
        Self::KEYS.iter().all(|k| self.list(k).is_empty())
    }
}

/// The highest level of `levels` that `current` of `max` has reached (a limit of 0 is
/// reached by any use). Exact: `current / max ≥ level / 100` in integers.
pub fn reached_level(levels: &[u16], current: i64, max: i64) -> Option<u16> {
    if current <= 0 {
        return None;
    }
    levels
        .iter()
        .copied()
        .filter(|l| max == 0 || i128::from(current) * 100 >= i128::from(*l) * i128::from(max))
        .max()
}

/// What a crossing alerts with: level, utilization (1.0 is 100 %) and 3scale's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub level: u16,
    pub utilization: Decimal,
    pub message: String,
}

/// The alert for `current` of `max` of `metric` per `period`, if it reaches a level above
/// `already` (the highest level alerted this period, if any): 3scale raises the highest level
/// reached, once.
pub fn crossing(
    levels: &[u16],
    metric: &str,
    period: Period,
    current: i64,
    max: i64,
    already: Option<u16>,
) -> Option<Crossing> {
    let level = reached_level(levels, current, max)?;
    if already.is_some_and(|a| a >= level) {
        return None;
    }
    let utilization = match max {
        0 => Decimal::ONE,
        max => (Decimal::from(current) / Decimal::from(max)).round_dp(2).normalize(),
    };
    Some(Crossing {
        level,
        utilization,
        message: format!("{metric} per {}: {current} of {max}", period.as_str()),
    })
}

/// Whether an alert at `level` is a violation (3scale's `kind`).
pub fn is_violation(level: u16) -> bool {
    level >= VIOLATION_LEVEL
}

/// A provider user's e-mail notifications, as 3scale names them (Ch. 4.3), with the section a
/// member needs to receive each.
pub const PREFERENCES: [(&str, Section); 25] = [
    ("account_created", Section::Partners),
    ("account_deleted", Section::Partners),
    ("account_plan_change_requested", Section::Partners),
    ("application_created", Section::Partners),
    ("application_plan_change_requested", Section::Partners),
    ("cinstance_cancellation", Section::Partners),
    ("cinstance_expired_trial", Section::Partners),
    ("cinstance_plan_changed", Section::Partners),
    ("credit_card_unstore_failed", Section::Finance),
    ("csv_data_export", Section::Partners),
    ("daily_report", Section::Monitoring),
    ("expired_credit_card_provider", Section::Finance),
    ("invoices_to_review", Section::Finance),
    ("limit_alert_reached_provider", Section::Monitoring),
    ("limit_violation_reached_provider", Section::Monitoring),
    ("message_received", Section::Partners),
    ("plan_downgraded", Section::Finance),
    ("service_contract_cancellation", Section::Partners),
    ("service_contract_created", Section::Partners),
    ("service_contract_plan_changed", Section::Partners),
    ("service_deleted", Section::Plans),
    ("service_plan_change_requested", Section::Partners),
    ("unsuccessfully_charged_invoice_final_provider", Section::Finance),
    ("unsuccessfully_charged_invoice_provider", Section::Finance),
    ("weekly_report", Section::Monitoring),
];

/// The preferences `who` may hold (their sections'), each with whether it is on: what is not
/// stored is on (3scale's default). `stored` maps names to whether they are on.
pub fn visible_preferences(
    who: &crate::access::Principal,
    stored: impl Fn(&str) -> Option<bool>,
) -> Vec<(&'static str, Section, bool)> {
    PREFERENCES
        .iter()
        .filter(|(_, section)| who.may_enter(*section))
        .map(|(name, section)| (*name, *section, stored(name).unwrap_or(true)))
        .collect()
}

/// The changes a form asks of `who`'s preferences (`name=true|false|1|0`, also as
/// `notification_preferences[name]` or `preferences[name]`); other fields are ignored, a
/// preference outside their sections or a value not a flag is refused, named. A name given
/// twice counts as its last value (a checkbox after its hidden `0`).
pub fn preference_changes<'f>(
    who: &crate::access::Principal,
    form: impl IntoIterator<Item = (&'f str, &'f str)>,
) -> Result<Vec<(String, bool)>, Invalid> {
    let mut changes: Vec<(String, bool)> = Vec::new();
    let mut errors = Invalid::default();
    for (name, value) in form {
        let name = name
            .strip_prefix("notification_preferences[")
            .or_else(|| name.strip_prefix("preferences["))
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let Some(section) = preference_section(name) else {
            continue;
        };
        if !who.may_enter(section) {
            errors.push(name, "is not a notification your sections allow");
            continue;
        }
        let on = match value.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                errors.push(name, "must be true or false");
                continue;
            }
        };
        changes.retain(|(n, _)| n != name);
        changes.push((name.to_string(), on));
    }
    errors.or(changes)
}

/// The section a preference needs, if it is one.
pub fn preference_section(name: &str) -> Option<Section> {
    PREFERENCES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The provider preference an event is e-mailed under, if any. Events that concern one
/// service (`service` is known) reach only users who may see it.
pub fn provider_preference(event_type: &str, level: Option<u16>) -> Option<&'static str> {
    Some(match event_type {
        "account.created" => "account_created",
        "account.deleted" => "account_deleted",
        "application.created" => "application_created",
        "application.deleted" => "cinstance_cancellation",
        "application.plan_changed" => "cinstance_plan_changed",
        "invoice.charge_failed" => "unsuccessfully_charged_invoice_final_provider",
        "invoice.charge_failed_will_retry" => "unsuccessfully_charged_invoice_provider",
        "invoice.finalized" => "invoices_to_review",
        "credit_card.expiring" => "expired_credit_card_provider",
        "limit.alert" => match level.is_some_and(is_violation) {
            true => "limit_violation_reached_provider",
            false => "limit_alert_reached_provider",
        },
        _ => return None,
    })
}

/// The developer e-mails of Ch. 27.2 (to every admin of the account), by event.
pub fn buyer_mail(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "invoice.issued" => "upcoming_invoice_charge",
        "invoice.charged" => "invoice_charged",
        "invoice.charge_failed_will_retry" => "invoice_charge_failed_with_retry",
        "invoice.charge_failed" => "invoice_charge_failed_without_retry",
        "credit_card.expiring" => "credit_card_expiring",
        "credits.low_balance" => "credits_low_balance",
        "message.sent" => "message",
        "limit.alert" => "limit_alert",
        _ => return None,
    })
}

/// Whether a webhook may be sent to `ip`: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation space, nor IPv6's equivalents (an
/// IPv4-mapped address is judged as its IPv4 address). No SSRF from webhooks.
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_policy_keeps_trying_for_a_day() {
        let p = RetryPolicy::default();
        assert!(p.min_span_ms() >= 24 * 3600 * 1000, "{}", p.min_span_ms());
        assert_eq!(p.next_delay_ms(1, 0), Some(24_000));
        assert_eq!(p.next_delay_ms(2, JITTER_PERMILLE), Some(72_000));
        assert_eq!(p.next_delay_ms(24, 0), None);
        assert_eq!(p.next_delay_ms(20, 200), Some(7_200_000));
    }

    proptest! {
        #[test]
        fn delays_grow_and_stay_in_their_band(base in 1u64..100_000, n in 1u32..23, j in 0u64..400) {
            let p = RetryPolicy { base_ms: base, max_attempts: 24 };
            let d = p.next_delay_ms(n, j).unwrap_or_default();
            let lo = p.next_delay_ms(n, 0).unwrap_or_default();
            let hi = p.next_delay_ms(n, JITTER_PERMILLE).unwrap_or_default();
            prop_assert!(lo <= d && d <= hi);
            prop_assert!(hi <= base * CAP_BASES * 12 / 10);
            prop_assert!(p.next_delay_ms(n + 1, 0).unwrap_or(u64::MAX) >= lo);
        }

        #[test]
        fn the_level_reached_is_exact(current in 0i64..10_000, max in 0i64..1_000) {
            let got = reached_level(&ALERT_LEVELS, current, max);
            for l in ALERT_LEVELS {
                let reached = current > 0 && (max == 0 || current * 100 >= i64::from(l) * max);
                prop_assert!(!reached || got >= Some(l));
            }
        }
    }

    #[test]
    fn only_public_addresses_take_webhooks() {
        let public = |s: &str| s.parse().map(is_public_address).unwrap_or(true);
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(private), "{private}");
        }
        for ok in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(ok), "{ok}");
        }
    }

    #[test]
    fn switches_are_event_types() {
        assert_eq!(
            threescale_shape("application.key_created"),
            Some(("application", "key_created"))
        );
        assert_eq!(threescale_shape("credits.granted"), None);
        assert!(is_event_type("limit.alert") && is_event_type("account.plan_changed") && !is_event_type("nope"));
        assert_eq!(
            parse_event_types(&["limit.alert, account.created", "limit.alert"]),
            Ok(vec!["limit.alert".to_string(), "account.created".to_string()])
        );
        assert!(parse_event_types(&["x.y"]).is_err());
    }

    #[test]
    fn alerts_raise_the_highest_new_level_once() {
        let levels = [50, 100];
        let c = crossing(&levels, "hits", Period::Day, 4, 4, None);
        assert_eq!(
            c,
            Some(Crossing {
                level: 100,
                utilization: Decimal::ONE,
                message: "hits per day: 4 of 4".into()
            })
        );
        assert_eq!(
            crossing(&levels, "hits", Period::Day, 2, 4, None).map(|c| c.level),
            Some(50)
        );
        assert_eq!(crossing(&levels, "hits", Period::Day, 3, 4, Some(50)), None);
        assert_eq!(crossing(&levels, "hits", Period::Day, 1, 4, None), None);
        assert_eq!(
            NotificationSettings::parse_levels("web_provider", &["", "80", "50", "50"]),
            Ok(vec![50, 80])
        );
        assert!(NotificationSettings::parse_levels("web_provider", &["55"]).is_err());
    }

    #[test]
    fn every_event_a_preference_names_is_in_the_catalogue() {
        for (_, t) in THREESCALE_SWITCHES {
            if let Some(p) = provider_preference(t, None) {
                assert!(preference_section(p).is_some(), "{p}");
            }
        }
        for t in TOLLGATE_EVENTS {
            if let Some(p) = provider_preference(t, Some(50)) {
                assert!(preference_section(p).is_some(), "{p}");
            }
        }
    }
}
