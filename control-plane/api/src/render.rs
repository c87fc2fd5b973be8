//! 3scale's JSON shapes: each object wrapped in its name (`{"service": {…}}`), lists as
//! `{"services": [{"service": {…}}]}`, money kept as text shown as decimal strings (`"20.0"`)
//! and fees as numbers. One serializer for every catalog record, whatever its resource.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use tollgate_domain::form::Page;
use tollgate_store::catalog::resource::Record;

pub use tollgate_store::catalog::json::{money_number, record};

/// A decimal as text, normalized (`"12.5"`).
pub fn decimal(d: Decimal) -> Value {
    Value::String(d.normalize().to_string())
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
