//! Money in a currency. Amounts are `Decimal` throughout. Line items keep 4 decimals; a total
//! is rounded half-up to its currency's minor unit (USD 2, JPY 0, KWD 3, from ISO 4217 via
//! `iso_currency`), so that an invoice never shows a fraction of a cent it cannot charge.

use rust_decimal::{Decimal, RoundingStrategy};

/// The currency's minor units (decimal places), if it is an ISO 4217 currency that has them.
pub fn minor_units(code: &str) -> Option<u32> {
    iso_currency::Currency::from_code(code)?.exponent().map(u32::from)
}

/// A total in `currency`: half-up to its minor unit (`None`: not a currency with one).
pub fn round(amount: Decimal, currency: &str) -> Option<Decimal> {
    Some(amount.round_dp_with_strategy(minor_units(currency)?, RoundingStrategy::MidpointAwayFromZero))
}

/// A total as printed: rounded to the currency's minor unit and showing all its places
/// (`74.50`, `1235` for JPY).
pub fn display(amount: Decimal, currency: &str) -> String {
    let places = minor_units(currency).unwrap_or(2);
    let mut d = amount.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(places);
    d.to_string()
}

/// An amount in the currency's minor unit (cents for USD, yen for JPY), as payment gateways
/// take it.
pub fn minor_amount(amount: Decimal, currency: &str) -> Option<i64> {
    use rust_decimal::prelude::ToPrimitive;
    let units = minor_units(currency)?;
    let scaled = round(amount, currency)? * Decimal::from(10i64.pow(units));
    scaled.to_i64()
}

/// A decimal as 3scale's JSON shows money kept as text: at least one decimal place (`"20.0"`).
pub fn text(d: Decimal) -> String {
    let d = d.normalize();
    if d.scale() == 0 {
        format!("{d}.0")
    } else {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    #[test]
    fn totals_round_half_up_to_the_currencys_minor_unit() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("KWD"), Some(3));
        assert_eq!(minor_units("XYZ"), None);
        assert_eq!(round(d("10.005"), "USD"), Some(d("10.01")));
        assert_eq!(round(d("10.0049"), "USD"), Some(d("10.00")));
        assert_eq!(
            round(d("-10.005"), "USD"),
            Some(d("-10.01")),
            "a refund rounds like a charge"
        );
        assert_eq!(round(d("1234.5"), "JPY"), Some(d("1235")));
        assert_eq!(round(d("1.2345"), "KWD"), Some(d("1.235")));
        assert_eq!(display(d("74.5"), "EUR"), "74.50");
        assert_eq!(display(d("0"), "KWD"), "0.000");
        assert_eq!(display(d("1234.5"), "JPY"), "1235");
    }

    #[test]
    fn gateways_take_minor_units() {
        assert_eq!(minor_amount(d("10.005"), "USD"), Some(1001));
        assert_eq!(minor_amount(d("1200"), "JPY"), Some(1200));
        assert_eq!(minor_amount(d("1.2345"), "KWD"), Some(1235));
        assert_eq!(minor_amount(d("1"), "XXX"), None);
    }

    #[test]
    fn money_text_is_like_rails() {
        assert_eq!(text(d("20")), "20.0");
        assert_eq!(text(d("0.1000")), "0.1");
        assert_eq!(text(d("1.2345")), "1.2345");
    }
}
