//! Monthly fees by the day (SPEC §6.2, §6.5): a subscription that starts mid-month pays for the
//! days left, and a mid-month upgrade refunds the old plan's days left and charges the new
//! plan's. Downgrades refund nothing (3scale). Amounts keep 4 decimals, half-up.

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

/// Days in `day`'s month.
pub fn days_in_month(day: NaiveDate) -> u32 {
    let first = day.with_day(1).unwrap_or(day);
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(first);
    u32::try_from((next - first).num_days()).unwrap_or(30)
}

/// The part of a monthly `fee` for the days from `from` (included) to the end of its month.
pub fn rest_of_month(fee: Decimal, from: NaiveDate) -> Decimal {
    let days = days_in_month(from);
    let left = days - from.day() + 1;
    (fee * Decimal::from(left) / Decimal::from(days)).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
}

/// A plan line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Refund(Decimal),
    Upgrade(Decimal),
}

/// The lines a plan change on `on` adds to the month: for an upgrade, the old plan's rest of
/// the month refunded and the new plan's charged; for a downgrade (or the same fee), none.
pub fn change(old_fee: Decimal, new_fee: Decimal, on: NaiveDate) -> Vec<Line> {
    if new_fee <= old_fee {
        return Vec::new();
    }
    vec![
        Line::Refund(-rest_of_month(old_fee, on)),
        Line::Upgrade(rest_of_month(new_fee, on)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_seeds_mid_month_upgrade_is_minus_100_plus_150() {
        // $200 → $300 with half of a 30-day month left.
        let lines = change(Decimal::from(200), Decimal::from(300), day("2026-11-16"));
        assert_eq!(
            lines,
            vec![Line::Refund(Decimal::from(-100)), Line::Upgrade(Decimal::from(150))]
        );
        let total: Decimal = lines
            .iter()
            .map(|l| match l {
                Line::Refund(a) | Line::Upgrade(a) => *a,
            })
            .sum();
        assert_eq!(total, Decimal::from(50));
        assert!(
            change(Decimal::from(300), Decimal::from(200), day("2026-11-16")).is_empty(),
            "no refund down"
        );
    }

    #[test]
    fn months_have_their_own_lengths() {
        assert_eq!(days_in_month(day("2026-02-10")), 28);
        assert_eq!(days_in_month(day("2028-02-10")), 29);
        assert_eq!(days_in_month(day("2026-12-31")), 31);
        assert_eq!(rest_of_month(Decimal::from(31), day("2026-12-31")), Decimal::from(1));
    }

    proptest! {
        #[test]
        fn a_whole_month_is_the_fee_and_less_is_never_more(
            cents in 0i64..10_000_000, y in 2000i32..2100, m in 1u32..=12, d in 1u32..=31,
        ) {
            let fee = Decimal::new(cents, 2);
            let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
            prop_assert_eq!(rest_of_month(fee, first), fee);
            if let Some(day) = NaiveDate::from_ymd_opt(y, m, d) {
                let part = rest_of_month(fee, day);
                prop_assert!(part <= fee && part >= Decimal::ZERO);
            }
        }
    }
}
