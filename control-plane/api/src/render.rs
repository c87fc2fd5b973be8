//! 3scale's JSON shapes: each object wrapped in its name (`{"service": {…}}`), lists as
//! `{"services": [{"service": {…}}]}`, money kept as text shown as decimal strings (`"20.0"`)
//! and fees as numbers. One serializer for every catalog record, whatever its resource.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tollgate_domain::form::Page;
use tollgate_store::catalog::resource::{Cell, Extra, Record};

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

/// A decimal as text, normalized (`"12.5"`).
pub fn decimal(d: Decimal) -> Value {
    Value::String(d.normalize().to_string())
}

fn cell(c: &Cell) -> Value {
    match c {
        Cell::Int(v) => json!(v),
        Cell::Bool(v) => json!(v),
        Cell::Text(v) => json!(v),
        Cell::Money(v) => v.map_or(Value::Null, |d| Value::String(tollgate_domain::money::text(d))),
        Cell::Fee(v) => v.map_or(Value::Null, money_number),
        Cell::Address(v) => v.as_ref().map_or(Value::Null, |a| json!(a)),
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

/// `{name: value}`.
pub fn wrap(name: &str, value: impl Serialize) -> Json<Value> {
    Json(json!({ name: value }))
}

/// `{plural: [{name: item}, …]}`.
pub fn wrap_list<T: Serialize>(plural: &str, name: &str, items: impl IntoIterator<Item = T>) -> Json<Value> {
    let items: Vec<Value> = items.into_iter().map(|i| json!({ name: i })).collect();
    Json(json!({ plural: items }))
}

/// A record wrapped in its resource's name.
pub fn one(r: &Record) -> Json<Value> {
    wrap(r.resource.name, record(r))
}

/// Records of one resource, as its list.
pub fn many(plural: &str, name: &str, items: &[Record]) -> Json<Value> {
    wrap_list(plural, name, items.iter().map(record))
}

/// A page of a longer list: its records, and `metadata` (3scale's `per_page`,
/// `total_entries`, `total_pages`, `current_page`) when there is more than one page.
pub fn page(plural: &str, name: &str, items: &[Record], page: Page, total: i64) -> Json<Value> {
    let Json(mut list) = many(plural, name, items);
    if page.per_page < total {
        if let Value::Object(m) = &mut list {
            m.insert(
                "metadata".into(),
                json!({
                    "per_page": page.per_page,
                    "total_entries": total,
                    "total_pages": (total + page.per_page - 1) / page.per_page,
                    "current_page": page.page,
                }),
            );
        }
    }
    Json(list)
}

/// A created object: 201 with the wrapped body.
pub fn created(name: &str, value: impl Serialize) -> Response {
    (StatusCode::CREATED, wrap(name, value)).into_response()
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
