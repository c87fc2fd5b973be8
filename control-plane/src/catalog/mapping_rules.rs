//! Mapping rules of services and backends (3scale §19.4): `{http_method, pattern, metric,
//! delta, position, last}`. Patterns are validated here; the filter matches them.

use super::behaviour::{int, text};
use super::metrics::Owner;
use super::resource::{field, Kind, OnCreate, Resource, Val, Values};
use crate::error::ApiError;
use sqlx::AnyConnection;

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
];

const FIELDS: &[super::resource::Field] = &[
    field("http_method", Kind::OneOf(METHODS), OnCreate::Required),
    field("pattern", Kind::Text, OnCreate::Required),
    field("metric_id", Kind::Id, OnCreate::Required),
    field("delta", Kind::Count, OnCreate::Required),
    field("position", Kind::Count, OnCreate::Derived),
    field("last", Kind::Bool, OnCreate::Default("false")),
];

pub const MAPPING_RULE: Resource = Resource {
    name: "mapping_rule",
    collection: "mapping_rules",
    table: "mapping_rules",
    scope: &["service_id"],
    fields: FIELDS,
    unique_field: "pattern",
    transitions: &[],
};
pub const BACKEND_MAPPING_RULE: Resource = Resource {
    name: "mapping_rule",
    collection: "mapping_rules",
    table: "mapping_rules",
    scope: &["backend_id"],
    fields: FIELDS,
    unique_field: "pattern",
    transitions: &[],
};

/// A pattern: starts with `/`; `{name}` variables are closed and named; `$` only at the end of
/// the path part; an optional query part of `name=value` pairs.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    let (path, query) = match pattern.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pattern, None),
    };
    let body = path.strip_suffix('$').unwrap_or(path);
    if body.contains('$') {
        return Err("'$' may only end the path".into());
    }
    let mut open = false;
    let mut name_len = 0;
    for c in pattern.chars() {
        match c {
            '{' if open => return Err("nested '{'".into()),
            '{' => {
                open = true;
                name_len = 0;
            }
            '}' if !open => return Err("'}' without '{'".into()),
            '}' if name_len == 0 => return Err("empty variable '{}'".into()),
            '}' => open = false,
            '/' | '?' | '&' | '=' if open => return Err("unclosed '{'".into()),
            _ if open => name_len += 1,
            _ => {}
        }
    }
    if open {
        return Err("unclosed '{'".into());
    }
    if let Some(q) = query {
        if q.is_empty() || q.split('&').any(|pair| pair.is_empty() || pair.starts_with('=')) {
            return Err("query part must be name=value pairs".into());
        }
    }
    Ok(())
}

/// Checks the pattern, the metric's owner and the delta; appends new rules at the end.
pub async fn before_write(
    conn: &mut AnyConnection,
    owner: Owner,
    id: Option<i64>,
    values: &mut Values,
) -> Result<(), ApiError> {
    if let Some(pattern) = text(values, "pattern") {
        validate_pattern(pattern).map_err(|e| ApiError::invalid("pattern", e))?;
    }
    if int(values, "delta") == Some(0) {
        return Err(ApiError::invalid("delta", "must be greater than 0"));
    }
    let (column, owner_id) = match owner {
        Owner::Service(id) => ("service_id", id),
        Owner::Backend(id) => ("backend_id", id),
    };
    if let Some(metric_id) = int(values, "metric_id") {
        // A service's rules may count its own metrics or those of the backends it uses.
        let sql = match owner {
            Owner::Service(_) => {
                "SELECT id FROM metrics WHERE id = $1 AND (service_id = $2 OR backend_id IN
                   (SELECT backend_id FROM backend_usages WHERE service_id = $2))"
            }
            Owner::Backend(_) => "SELECT id FROM metrics WHERE id = $1 AND backend_id = $2",
        };
        let found: Option<i64> = sqlx::query_scalar(sql)
            .bind(metric_id)
            .bind(owner_id)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(ApiError::invalid("metric_id", "does not exist here"));
        }
    }
    if id.is_none() && int(values, "position").is_none() {
        let next: i64 = sqlx::query_scalar(&format!(
            "SELECT COALESCE(MAX(position), 0) + 1 FROM mapping_rules WHERE {column} = $1"
        ))
        .bind(owner_id)
        .fetch_one(&mut *conn)
        .await?;
        values.push(("position", Val::Int(next)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_pattern;

    #[test]
    fn patterns() {
        for ok in ["/", "/v1/{id}", "/v1/word/{word}.json$", "/search?q={q}&lang=en", "/a$"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["v1", "/a b", "/{", "/{}", "/a}", "/a$/b", "/{a/b}", "/x?", "/x?=1"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }
}
