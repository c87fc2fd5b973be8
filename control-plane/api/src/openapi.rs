//! `GET /openapi.json`: the whole HTTP API as OpenAPI 3.1, written from the route table the
//! router mounts ([`crate::table`]) — every route is documented, and only routes that are
//! served. Catalog resources add their request bodies from their declared fields.

use crate::routes::{Guard, Route, Routes};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tollgate_store::catalog::resource::{Field, Kind, OnCreate};

fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::Text => json!({"type": "string"}),
        Kind::SystemName => json!({"type": "string", "pattern": "^[A-Za-z0-9_/-]+$"}),
        Kind::Count | Kind::Id => json!({"type": "integer", "minimum": 0}),
        Kind::OptCount => json!({"type": ["integer", "null"], "minimum": 0}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Money => json!({"type": "string", "description": "decimal, at most 4 places"}),
        Kind::Fee => json!({"type": "number", "description": "decimal, at most 4 places"}),
        Kind::OneOf(words) => json!({"type": "string", "enum": words}),
        Kind::Address => json!({"type": "object"}),
        Kind::Url => {
            json!({"type": "string", "format": "uri", "description": "http or https URL without query, or empty"})
        }
        Kind::UsagePath => json!({"type": "string", "description": "a path prefix such as /v2"}),
        Kind::Password => json!({"type": "string", "format": "password", "minLength": 6, "writeOnly": true}),
        Kind::Levels => json!({
            "type": "object",
            "description": "alert levels per list: notification_settings[web_provider][]=50 (also email_provider, web_buyer, email_buyer); levels 50, 80, 90, 100, 120, 150, 200, 300",
            "properties": {
                "web_provider": {"type": "array", "items": {"type": "integer"}},
                "email_provider": {"type": "array", "items": {"type": "integer"}},
                "web_buyer": {"type": "array", "items": {"type": "integer"}},
                "email_buyer": {"type": "array", "items": {"type": "integer"}},
            },
        }),
    }
}

fn body_schema(fields: &[Field], create: bool) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields
        .iter()
        .filter(|f| f.kind != Kind::Address && (create || f.updatable))
    {
        props.insert(f.name.into(), kind_schema(f.kind));
        if create && f.on_create == OnCreate::Required {
            required.push(f.name);
        }
    }
    match create {
        true => json!({"type": "object", "properties": props, "required": required}),
        false => json!({"type": "object", "properties": props}),
    }
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.split('}').next()))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn operation(route: &Route, path: &str) -> Value {
    let mut params = path_params(path);
    if route.method == axum::http::Method::GET && route.path.ends_with("s.json") {
        params.push(json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}));
        params.push(
            json!({"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}),
        );
    }
    let mut o = json!({
        "summary": route.summary,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "403": {"description": "Access denied"},
                      "404": {"description": "Not found"}, "422": {"description": "Invalid: {\"errors\": {field: [message]}}"}},
    });
    if let Guard::Token(p) = route.guard {
        o["x-tollgate-permission"] = json!({
            "scope": p.scope.as_str(),
            "access": if p.access == tollgate_domain::access::Access::Read { "read" } else { "write" },
            "section": p.section.as_str(),
        });
    } else {
        o["security"] = json!([]);
    }
    if let Some(body) = route.body {
        let schema = body_schema(body.fields, body.create);
        o["requestBody"] = json!({"content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": schema},
        }});
    }
    o
}

/// The document for a route table.
pub fn document(routes: &Routes) -> Value {
    let mut paths = Map::new();
    for route in &routes.0 {
        let method = route.method.as_str().to_ascii_lowercase();
        for path in route.documented_paths() {
            let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
            entry[method.as_str()] = operation(route, &path);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tollgate control plane", "version": crate::VERSION,
                 "description": "3scale-compatible admin API (Account Management), Billing API, service-management API and operations."},
        "components": {"securitySchemes": {
            "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
        "security": [{"access_token": []}, {"bearer": []}],
        "paths": paths,
    })
}

/// The document of the routes a router mounts, written once when it is built and served at
/// `/openapi.json` (a request extension, so what is served is what is mounted).
#[derive(Clone)]
pub struct Document(pub Arc<Value>);

impl Document {
    pub fn of(routes: &Routes) -> Document {
        Document(Arc::new(document(routes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mounted_route_is_documented_and_nothing_else() {
        let table = crate::table();
        let doc = document(&table);
        let paths = doc["paths"].as_object().unwrap();
        let mut operations = 0;
        for route in &table.0 {
            for path in route.documented_paths() {
                let method = route.method.as_str().to_ascii_lowercase();
                assert!(paths[&path].get(&method).is_some(), "{method} {path}");
                operations += 1;
            }
        }
        let documented: usize = paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
        assert_eq!(documented, operations, "an operation the table does not mount");
        // What the hand-kept list used to miss.
        for p in [
            "/transactions.xml",
            "/transactions.json",
            "/transactions/authorize.xml",
            "/transactions/authrep.xml",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        assert!(paths["/admin/api/services/{service_id}/metrics.json"]["post"]["requestBody"].is_object());
        assert!(paths.contains_key("/admin/api/accounts/{account_id}/users/{id}/activate.json"));
        let create = &paths["/admin/api/services/{service_id}/proxy/mapping_rules.json"]["post"]["requestBody"]
            ["content"]["application/json"]["schema"];
        assert!(create["required"].as_array().unwrap().iter().any(|f| f == "pattern"));
    }
}
