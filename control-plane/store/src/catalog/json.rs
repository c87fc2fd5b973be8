//! A catalog record as 3scale's JSON shows it: money kept as text shown as decimal strings
//! (`"20.0"`), fees as numbers. The admin API answers with it and the outbox keeps it as the
//! snapshot an event carries (so a webhook shows the resource as the API would have).

use super::resource::{Cell, Extra, Record};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

/// Money as a JSON number. serde_json holds numbers as f64, so the number is written only when
/// the f64's shortest form reads back as the same decimal (always, for realistic amounts with
/// at most 4 places); otherwise the exact decimal string is written instead.
pub fn money_number(d: Decimal) -> Value {
    use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
    match d
        .to_f64()
        .filter(|f| Decimal::from_f64(*f).map(|back| back == d).unwrap_or(false))
    {
        Some(f) => json!(f),
        None => Value::String(tollgate_domain::money::text(d)),
    }
}

fn cell(c: &Cell) -> Value {
    match c {
        Cell::Int(v) => json!(v),
        Cell::Bool(v) => json!(v),
        Cell::Text(v) => json!(v),
        Cell::Money(v) => v.map_or(Value::Null, |d| Value::String(tollgate_domain::money::text(d))),
        Cell::Fee(v) => v.map_or(Value::Null, money_number),
        Cell::Address(v) => v.as_ref().map_or(Value::Null, |a| json!(a)),
        Cell::Json(v) => v.clone().unwrap_or(Value::Null),
    }
}

fn extra(e: &Extra) -> Value {
    match e {
        Extra::Bool(b) => json!(b),
        Extra::Text(t) => json!(t),
        Extra::Strings(s) => json!(s),
        Extra::Empty => json!({}),
    }
}

/// A catalog record as 3scale shows it.
pub fn record(r: &Record) -> Value {
    let mut m = Map::new();
    for (name, c) in &r.cells {
        m.insert((*name).into(), cell(c));
    }
    for (name, e) in &r.extra {
        m.insert((*name).into(), extra(e));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn fees_render_as_exact_numbers() {
        let d = |s| Decimal::from_str(s).unwrap_or_default();
        assert_eq!(money_number(d("12")).to_string(), "12.0");
        assert_eq!(money_number(d("0.1")).to_string(), "0.1");
        assert_eq!(money_number(d("1234567.8912")).to_string(), "1234567.8912");
        assert_eq!(
            money_number(d("12345678901234567890.1234")),
            json!("12345678901234567890.1234")
        );
    }
}
