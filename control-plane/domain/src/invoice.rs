//! Invoices (SPEC §6.3), apart from where they are stored: the states and which moves between
//! them are legal, the line types, totals with VAT, friendly ids, and the records an invoice is
//! made of.
//!
//! VAT is computed on the unrounded subtotal and only the three totals are rounded (to the
//! currency's minor unit), so the sum of 4-decimal lines is never rounded twice.

use crate::billing::{words, Numbering};
use crate::ids::{AccountId, InvoiceId, LineId, MetricId, PlanId};
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
        crate::money::round(d, currency)
            .unwrap_or_else(|| d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
    };
    Totals {
        without_vat: round(subtotal),
        vat_amount: round(vat),
        with_vat: round(subtotal + vat),
    }
}

/// The numbering scope of an invoice for `period` (`YYYY-MM`): the month, or its year.
pub fn numbering_scope(period: &str, numbering: Numbering) -> String {
    match numbering {
        Numbering::Yearly => period.chars().take(4).collect(),
        Numbering::Monthly => period.to_string(),
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

/// Whether `s` is a billing month, `YYYY-MM`: its first day.
pub fn parse_period(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 7)
}

/// The first and last day of a `YYYY-MM` period.
pub fn period_bounds(period: &str) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
    let first = parse_period(period)?;
    let last = first.checked_add_months(chrono::Months::new(1))?.pred_opt()?;
    Some((first, last))
}

words!(
    /// Made by the billing run, or by an admin (the run never touches those).
    CreationType { Background = "background", Manual = "manual" }
);

/// An invoice as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: InvoiceId,
    pub account_id: AccountId,
    pub friendly_id: String,
    pub state: State,
    /// `YYYY-MM`.
    pub period: String,
    pub creation_type: CreationType,
    pub currency: String,
    /// Frozen when issued; until then the account's current rate applies.
    pub vat_rate: Option<Decimal>,
    pub vat_code: Option<String>,
    /// The parties as frozen when issued: JSON documents ([`Party`]).
    pub buyer: Option<String>,
    pub issuer: Option<String>,
    pub finalized_at: Option<String>,
    pub issued_on: Option<String>,
    pub due_on: Option<String>,
    pub paid_at: Option<String>,
    pub charging_retries_count: i64,
    pub last_charged_on: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A line item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub id: LineId,
    pub name: String,
    pub description: String,
    pub quantity: Decimal,
    pub cost: Decimal,
    /// The stored type: one of [`LineType`]'s words (3scale's class names are read, ours kept).
    pub kind: String,
    pub metric_id: Option<MetricId>,
    pub contract_type: Option<String>,
    pub contract_id: Option<i64>,
    pub plan_id: Option<PlanId>,
    pub created_at: String,
}

/// A line to add (by the billing run with its `billing_key`, or by an admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub name: String,
    pub description: String,
    pub quantity: Decimal,
    pub cost: Decimal,
    pub kind: LineType,
    pub metric_id: Option<MetricId>,
    pub contract_type: Option<String>,
    pub contract_id: Option<i64>,
    pub plan_id: Option<PlanId>,
    /// What the line bills, unique: the billing run never bills a key twice.
    pub billing_key: Option<String>,
}

/// A party of an invoice, as frozen on it: the buyer (the account, with its billing address)
/// or the issuer (the provider).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Party {
    pub org_name: Option<String>,
    pub vat_code: Option<String>,
    pub address: Option<Address>,
}

/// A postal address; every part optional (what is blank is not printed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Address {
    pub name: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
}

impl Party {
    /// The party's lines as an invoice prints them: name, street lines, `zip city state`,
    /// country, VAT code.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.org_name.clone().unwrap_or_default()];
        let a = self.address.clone().unwrap_or_default();
        let field = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
        for line in [
            field(&a.address1),
            field(&a.address2),
            [field(&a.zip), field(&a.city), field(&a.state)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            field(&a.country),
        ] {
            if !line.is_empty() {
                out.push(line);
            }
        }
        if let Some(vat) = self.vat_code.as_deref().filter(|v| !v.is_empty()) {
            out.push(format!("VAT: {vat}"));
        }
        out
    }
}

/// An invoice with what it shows: its lines, totals (and the VAT rate they used), both parties
/// and the provider's invoice texts — everything a PDF or a screen renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub invoice: Invoice,
    pub lines: Vec<Line>,
    pub totals: Totals,
    pub vat_rate: Decimal,
    pub buyer: Party,
    pub issuer: Party,
    pub footnote: Option<String>,
    pub vat_zero_text: Option<String>,
}

/// Earnings of one billing month (3scale's): the total of its invoices except cancelled ones,
/// what is in process (open, finalized, pending), overdue (unpaid, failed) and paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earnings {
    pub month: String,
    pub total: Decimal,
    pub in_process: Decimal,
    pub overdue: Decimal,
    pub paid: Decimal,
}

impl Earnings {
    /// Adds an invoice's total in `state`.
    pub fn add(&mut self, state: State, cost: Decimal) {
        if state == State::Cancelled {
            return;
        }
        self.total += cost;
        match state {
            State::Open | State::Finalized | State::Pending => self.in_process += cost,
            State::Unpaid | State::Failed => self.overdue += cost,
            _ => self.paid += cost,
        }
    }
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
            friendly_id(&numbering_scope("2018-02", Numbering::Monthly), 13),
            "2018-02-00000013"
        );
        assert_eq!(
            friendly_id(&numbering_scope("2018-02", Numbering::Yearly), 13),
            "2018-00000013"
        );
        assert!(is_friendly_id("1111-11111111") && is_friendly_id("2018-02-00000013"));
        assert!(!is_friendly_id("2018-2-00000013") && !is_friendly_id("x"));
        assert!(parse_period("2026-11").is_some() && parse_period("2026-13").is_none());
        assert!(parse_period("2026-1").is_none());
        let (from, to) = period_bounds("2028-02").unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2028-02-01".into(), "2028-02-29".into())
        );
        assert!(period_bounds("2028-2").is_none());
    }

    #[test]
    fn parties_print_what_they_have() {
        let p = Party {
            org_name: Some("Acme".into()),
            vat_code: Some("EU1".into()),
            address: Some(Address {
                address1: Some("1 Road".into()),
                city: Some("Town".into()),
                zip: Some("123".into()),
                ..Address::default()
            }),
        };
        assert_eq!(p.lines(), vec!["Acme", "1 Road", "123 Town", "VAT: EU1"]);
        assert_eq!(Party::default().lines(), vec![""]);
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
