//! Variable costs (SPEC §6.2): a month's usage of a metric priced by the plan's pricing rules,
//! 3scale's way. Rules are tiers `[min, max]` of the month's units, counted from 1; each unit
//! costs the rule whose range holds it (graduated pricing), and units no rule covers are free.
//! Costs keep 4 decimals (the unit costs' own); rounding to the currency is the invoice
//! total's business ([`crate::money::round`]).

use rust_decimal::Decimal;

/// One pricing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// The first unit it prices (≥ 1).
    pub min: i64,
    /// The last unit it prices; `None`: every unit from `min` on.
    pub max: Option<i64>,
    pub cost_per_unit: Decimal,
}

/// What `units` of a month cost under `tiers`.
pub fn variable_cost(tiers: &[Tier], units: i64) -> Decimal {
    tiers
        .iter()
        .map(|t| {
            let last = t.max.map_or(units, |max| max.min(units));
            let count = (last - t.min.max(1) + 1).max(0);
            t.cost_per_unit * Decimal::from(count)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn tier(min: i64, max: Option<i64>, cost: &str) -> Tier {
        Tier {
            min,
            max,
            cost_per_unit: Decimal::from_str(cost).unwrap(),
        }
    }

    #[test]
    fn each_unit_costs_the_tier_it_falls_in() {
        // The first 100 calls free, 101–1000 at 0.01, beyond at 0.005.
        let tiers = [tier(101, Some(1000), "0.01"), tier(1001, None, "0.005")];
        assert_eq!(variable_cost(&tiers, 100), Decimal::ZERO);
        assert_eq!(variable_cost(&tiers, 101), Decimal::from_str("0.01").unwrap());
        assert_eq!(variable_cost(&tiers, 1000), Decimal::from_str("9.00").unwrap());
        assert_eq!(variable_cost(&tiers, 3000), Decimal::from_str("19.000").unwrap());
        assert_eq!(
            variable_cost(&[tier(1, None, "0.0001")], 3),
            Decimal::from_str("0.0003").unwrap()
        );
    }

    proptest! {
        #[test]
        fn graduated_cost_never_falls_as_usage_grows(
            a in 0i64..100_000, b in 0i64..100_000,
            split in 1i64..50_000, c1 in 0u32..10_000, c2 in 0u32..10_000,
        ) {
            let tiers = [
                Tier { min: 1, max: Some(split), cost_per_unit: Decimal::new(c1.into(), 4) },
                Tier { min: split + 1, max: None, cost_per_unit: Decimal::new(c2.into(), 4) },
            ];
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(variable_cost(&tiers, lo) <= variable_cost(&tiers, hi));
        }
    }
}
