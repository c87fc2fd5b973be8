//! An invoice's rules (SPEC §6.3), apart from where invoices are stored: the states and which
//! moves between them are legal, the line types, totals with VAT, and friendly ids.
//!
//! VAT is computed on the unrounded subtotal and only the three totals are rounded (to the
//! currency's minor unit), so the sum of 4-decimal lines is never rounded twice.

use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Finalized,
    Pending,
    Paid,
    Unpaid,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Open,
        State::Finalized,
        State::Pending,
        State::Paid,
        State::Unpaid,
        State::Failed,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Finalized => "finalized",
            State::Pending => "pending",
            State::Paid => "paid",
            State::Unpaid => "unpaid",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Only open and finalized invoices can be edited (friendly id, period, lines).
    pub fn editable(self) -> bool {
        matches!(self, State::Open | State::Finalized)
    }

    /// Issued and waiting for money: what the gateway may charge.
    pub fn chargeable(self) -> bool {
        matches!(self, State::Pending | State::Unpaid)
    }

    /// The states an invoice may move to this one from (3scale's state machine).
    pub fn reachable_from(self) -> &'static [State] {
        use State::*;
        match self {
            Open => &[],
            Finalized => &[Open],
            Pending => &[Open, Finalized],
            Paid => &[Finalized, Pending, Unpaid, Failed],
            Unpaid => &[Pending],
            Failed => &[Pending, Unpaid],
            Cancelled => &[Open, Finalized, Pending, Unpaid, Failed],
        }
    }
}

/// Moving an invoice in `from` to `to`: the new state, or why not.
pub fn transition(from: State, to: State) -> Result<State, String> {
    if to.reachable_from().contains(&from) {
        Ok(to)
    } else {
        Err(format!("cannot change from {} to {}", from.as_str(), to.as_str()))
    }
}

/// What a line bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineType {
    PlanCost,
    VariableCost,
    SetupFee,
    Refund,
    Upgrade,
    Credit,
    Custom,
}

impl LineType {
    pub const ALL: [LineType; 7] = [
        LineType::PlanCost,
        LineType::VariableCost,
        LineType::SetupFee,
        LineType::Refund,
        LineType::Upgrade,
        LineType::Credit,
        LineType::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineType::PlanCost => "plan_cost",
            LineType::VariableCost => "variable_cost",
            LineType::SetupFee => "setup_fee",
            LineType::Refund => "refund",
            LineType::Upgrade => "upgrade",
            LineType::Credit => "credit",
            LineType::Custom => "custom",
        }
    }

    /// Ours (`plan_cost`) or 3scale's class names (`LineItem::PlanCost`).
    pub fn parse(s: &str) -> Option<LineType> {
        let s = s.strip_prefix("LineItem::").unwrap_or(s);
        LineType::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.as_str().split('_').map(capitalize).collect::<String>() == s)
    }
}

fn capitalize(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// An invoice's totals in its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub without_vat: Decimal,
    pub vat_amount: Decimal,
    pub with_vat: Decimal,
}

/// Totals of lines costing `costs` at `vat_rate` percent, rounded to `currency`'s minor unit
/// (2 places when the currency is unknown).
pub fn totals(costs: impl IntoIterator<Item = Decimal>, vat_rate: Decimal, currency: &str) -> Totals {
    let subtotal: Decimal = costs.into_iter().sum();
    let vat = subtotal * vat_rate / Decimal::ONE_HUNDRED;
    let round = |d: Decimal| {
        crate::billing::round(d, currency)
            .unwrap_or_else(|| d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
    };
    Totals {
        without_vat: round(subtotal),
        vat_amount: round(vat),
        with_vat: round(subtotal + vat),
    }
}

/// The numbering scope of an invoice for `period` (`YYYY-MM`): the month, or its year.
pub fn numbering_scope(period: &str, numbering: &str) -> String {
    if numbering == "yearly" {
        period.chars().take(4).collect()
    } else {
        period.to_string()
    }
}

/// The `n`th friendly id in `scope`: `2026-11-00000013` or `2026-00000013`.
pub fn friendly_id(scope: &str, n: i64) -> String {
    format!("{scope}-{n:08}")
}

/// Whether `s` is a friendly id (`YYYY-MM-XXXXXXXX` or `YYYY-XXXXXXXX`).
pub fn is_friendly_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [y, n] => digits(y, 4) && digits(n, 8),
        [y, m, n] => digits(y, 4) && digits(m, 2) && digits(n, 8),
        _ => false,
    }
}

/// Whether `s` is a billing month, `YYYY-MM`.
pub fn parse_period(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_life_of_an_invoice() {
        use State::*;
        assert_eq!(transition(Open, Finalized), Ok(Finalized));
        assert_eq!(
            transition(Open, Pending),
            Ok(Pending),
            "3scale issues open invoices too"
        );
        assert_eq!(transition(Pending, Unpaid), Ok(Unpaid));
        assert_eq!(transition(Unpaid, Failed), Ok(Failed));
        assert_eq!(transition(Unpaid, Paid), Ok(Paid));
        assert_eq!(
            transition(Paid, Cancelled),
            Err("cannot change from paid to cancelled".into())
        );
        assert!(transition(Cancelled, Open).is_err());
        assert!(transition(Pending, Finalized).is_err());
        assert!(!Pending.editable() && Finalized.editable());
    }

    #[test]
    fn line_types_read_3scales_class_names() {
        assert_eq!(LineType::parse("LineItem::PlanCost"), Some(LineType::PlanCost));
        assert_eq!(LineType::parse("LineItem::VariableCost"), Some(LineType::VariableCost));
        assert_eq!(LineType::parse("setup_fee"), Some(LineType::SetupFee));
        assert_eq!(LineType::parse("LineItem::Nope"), None);
    }

    #[test]
    fn vat_is_computed_on_the_unrounded_subtotal() {
        // Three lines of 0.3333 are 0.9999: 1.00 without VAT; 21 % of 0.9999 is 0.209979 → 0.21;
        // with VAT 1.209879 → 1.21.
        let t = totals([d("0.3333"), d("0.3333"), d("0.3333")], d("21"), "USD");
        assert_eq!(
            t,
            Totals {
                without_vat: d("1.00"),
                vat_amount: d("0.21"),
                with_vat: d("1.21")
            }
        );
        let yen = totals([d("1000.5")], d("10"), "JPY");
        assert_eq!(yen.with_vat, d("1101"));
    }

    #[test]
    fn friendly_ids() {
        assert_eq!(
            friendly_id(&numbering_scope("2018-02", "monthly"), 13),
            "2018-02-00000013"
        );
        assert_eq!(friendly_id(&numbering_scope("2018-02", "yearly"), 13), "2018-00000013");
        assert!(is_friendly_id("1111-11111111") && is_friendly_id("2018-02-00000013"));
        assert!(!is_friendly_id("2018-2-00000013") && !is_friendly_id("x"));
        assert!(parse_period("2026-11").is_some() && parse_period("2026-13").is_none());
        assert!(parse_period("2026-1").is_none());
    }

    proptest! {
        #[test]
        fn totals_are_the_rounded_sum_of_the_lines(cents in proptest::collection::vec(-100_000i64..100_000, 0..20)) {
            let costs: Vec<Decimal> = cents.iter().map(|c| Decimal::new(*c, 4)).collect();
            let t = totals(costs.clone(), Decimal::ZERO, "USD");
            let sum: Decimal = costs.iter().sum();
            prop_assert_eq!(t.without_vat, t.with_vat);
            prop_assert!((t.without_vat - sum).abs() <= d("0.005"));
        }
    }
}
