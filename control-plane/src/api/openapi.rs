//! `GET /openapi.json`: the whole HTTP API as OpenAPI 3.1.
//!
//! The catalog's part is generated from the same mount table the router is built from
//! ([`admin::catalog`]), so paths, parameters, fields and state events cannot drift from what
//! is served; the hand-written endpoints are listed in [`OTHER`].

use super::admin;
use super::crud::Mount;
use crate::catalog::resource::{Kind, OnCreate};
use axum::Json;
use serde_json::{json, Map, Value};

/// Endpoints outside the catalog engine: (method, path, summary).
const OTHER: &[(&str, &str, &str)] = &[
    ("get", "/health", "Health, with schema and binary versions"),
    ("get", "/metrics", "Prometheus metrics"),
    ("get", "/openapi.json", "This document"),
    (
        "get",
        "/transactions/authrep.json",
        "Authorize and report (service-management API, JSON)",
    ),
    ("get", "/status", "Service-management API status"),
    ("get", "/check.txt", "Service-management API liveness"),
    (
        "post",
        "/admin/api/signup.json",
        "Create a developer account with its admin user",
    ),
    (
        "get",
        "/admin/api/accounts/find.json",
        "Find an account by username, email or user_id",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/plan.json",
        "The account's account plan",
    ),
    (
        "put",
        "/admin/api/accounts/{account_id}/billing_address.json",
        "Set the account's billing address",
    ),
    (
        "post",
        "/admin/api/accounts/{account_id}/messages.json",
        "Send a message to an account",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/applications/{application_id}/keys.json",
        "List application keys",
    ),
    (
        "post",
        "/admin/api/accounts/{account_id}/applications/{application_id}/keys.json",
        "Add an application key",
    ),
    (
        "delete",
        "/admin/api/accounts/{account_id}/applications/{application_id}/keys/{key}.json",
        "Delete an application key",
    ),
    (
        "get",
        "/admin/api/applications.json",
        "All applications (filters: service_id, plan_id, account_id, state)",
    ),
    (
        "get",
        "/admin/api/applications/find.json",
        "Find an application by application_id, app_id or user_key",
    ),
    (
        "post",
        "/admin/api/applications/bulk/{action}.json",
        "Extension: approve, suspend, resume or change_plan many applications (ids[]), all or none",
    ),
    ("get", "/admin/api/application_plans.json", "All application plans"),
    (
        "post",
        "/admin/api/application_plans/{plan_id}/copy.json",
        "Extension: copy a plan with its limits and pricing rules",
    ),
    (
        "get",
        "/admin/api/services/{service_id}/proxy.json",
        "Gateway settings of a service",
    ),
    (
        "put",
        "/admin/api/services/{service_id}/proxy.json",
        "Update gateway settings (deploys a sandbox config)",
    ),
    (
        "post",
        "/admin/api/services/{service_id}/proxy/deploy.json",
        "Deploy the service to the sandbox",
    ),
    (
        "get",
        "/admin/api/services/{service_id}/proxy/configs/{environment}.json",
        "Proxy configs of an environment",
    ),
    (
        "get",
        "/admin/api/services/{service_id}/proxy/configs/{environment}/latest.json",
        "Latest proxy config",
    ),
    (
        "get",
        "/admin/api/services/{service_id}/proxy/configs/{environment}/{version}.json",
        "One proxy config version",
    ),
    (
        "post",
        "/admin/api/services/{service_id}/proxy/configs/{environment}/{version}/promote.json",
        "Promote a version (to=production)",
    ),
    (
        "get",
        "/admin/api/account/proxy_configs/{environment}.json",
        "Latest config of every service: what gateways load",
    ),
    (
        "get",
        "/admin/api/billing/settings.json",
        "Billing settings: mode, currency (and its minor units), charging, footnote, VAT-0 text, numbering, gateway",
    ),
    (
        "put",
        "/admin/api/billing/settings.json",
        "Update the billing settings (bad fields all reported, named)",
    ),
    ("get", "/api/invoices.json", "Invoices (finance scope): filters account_id, state, month; page, per_page (≤ 20)"),
    ("post", "/api/invoices.json", "Create a manual invoice: account_id, period (YYYY-MM, default this month)"),
    ("get", "/api/invoices.csv", "Invoices as CSV (same filters)"),
    ("get", "/api/invoices/{id}.json", "One invoice, with totals (cost, cost_without_vat, vat_amount)"),
    ("put", "/api/invoices/{id}.json", "Update friendly_id or period while open or finalized"),
    ("get", "/api/invoices/{id}.pdf", "The invoice as a PDF, regenerated on request"),
    ("put", "/api/invoices/{id}/state.json", "Change state: finalized, pending, paid, unpaid, failed, cancelled (illegal moves are 422)"),
    ("post", "/api/invoices/{id}/charge.json", "Charge a pending or unpaid invoice through the payment gateway"),
    ("get", "/api/invoices/{id}/line_items.json", "Line items"),
    ("post", "/api/invoices/{id}/line_items.json", "Add a line: name, description, quantity, cost, type, metric_id, contract_id, plan_id"),
    ("get", "/api/invoices/{id}/line_items/{line_id}.json", "One line item"),
    ("delete", "/api/invoices/{id}/line_items/{line_id}.json", "Delete a line while the invoice is open or finalized"),
    ("get", "/api/invoices/{id}/payment_transactions.json", "Every charge attempt: success, amount, reference, message"),
    ("get", "/api/accounts/{account_id}/invoices.json", "An account's invoices (state, month filters)"),
    ("post", "/api/accounts/{account_id}/invoices.json", "Create a manual invoice for the account"),
    ("get", "/api/accounts/{account_id}/invoices/{id}.json", "One of the account's invoices"),
    ("put", "/admin/api/accounts/{account_id}/credit_card.json", "Store the gateway's customer reference (credit_card_token), payment_method_id, last 4 digits, expiry"),
    ("delete", "/admin/api/accounts/{account_id}/credit_card.json", "Forget the account's payment method"),
    ("get", "/admin/api/billing/earnings.json", "Earnings by month: total, in process, overdue, paid (month or year filter)"),
    ("post", "/master/api/providers/{provider_id}/billing_jobs.json", "Run billing for a date (YYYY-MM-DD); a date run twice changes nothing"),
    (
        "get",
        "/admin/api/settings/credits.json",
        "Prepaid credit settings: starter_credits, low_balance_threshold, purchase_url",
    ),
    (
        "put",
        "/admin/api/settings/credits.json",
        "Update the prepaid credit settings",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/credit_grants.json",
        "An account's credit grants",
    ),
    (
        "post",
        "/admin/api/accounts/{account_id}/credit_grants.json",
        "Grant credits: amount (> 0), kind (purchase|manual|starter|promotional), expires_at, note",
    ),
    (
        "get",
        "/admin/api/services/{service_id}/credit_margins.json",
        "Per rated metric and month: credits charged, upstream cost, margin",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/credits.json",
        "Credits issued to the developer (billing_month filter)",
    ),
    (
        "post",
        "/admin/api/accounts/{account_id}/credits.json",
        "Issue credits: amount (not 0), currency, billing_month (YYYY-MM), note, service_id, application_plan_id; prepaid: adjusts the balance, postpaid: a credit line on that month's invoice",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/credit_balance.json",
        "Balance as enforced now, pending deductions, totals, next expiry",
    ),
    (
        "get",
        "/admin/api/accounts/{account_id}/credit_transactions.json",
        "The credit ledger (since, until, kind; paginated), each entry with the balance after it",
    ),
    ("get", "/admin/api/provider.json", "The provider account"),
    ("put", "/admin/api/provider.json", "Update the provider account"),
    (
        "get",
        "/admin/api/users/{user_id}/permissions.json",
        "A provider user's sections and services",
    ),
    (
        "put",
        "/admin/api/users/{user_id}/permissions.json",
        "Set allowed_sections[] and allowed_service_ids[]",
    ),
    (
        "post",
        "/admin/api/users/{user_id}/access_tokens.json",
        "Create an access token for a provider user",
    ),
    (
        "get",
        "/admin/api/personal/access_tokens.json",
        "The caller's access tokens",
    ),
    (
        "post",
        "/admin/api/personal/access_tokens.json",
        "Create an access token (its value is shown once)",
    ),
    ("get", "/admin/api/personal/access_tokens/{id}.json", "One access token"),
    (
        "delete",
        "/admin/api/personal/access_tokens/{id}.json",
        "Delete an access token",
    ),
];

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
    }
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.split('}').next()))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn op(summary: String, path: &str, extra: Vec<Value>, body: Option<Value>) -> Value {
    let mut params = path_params(path);
    params.extend(extra);
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "403": {"description": "Access denied"},
                      "404": {"description": "Not found"}, "422": {"description": "Invalid: {\"errors\": {field: [message]}}"}},
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": schema},
        }});
    }
    o
}

fn add(paths: &mut Map<String, Value>, path: &str, method: &str, operation: Value) {
    let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
    entry[method] = operation;
}

fn mount_paths(paths: &mut Map<String, Value>, collection: &str, m: &Mount) {
    let r = m.resource;
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in r.fields {
        props.insert(f.name.into(), kind_schema(f.kind));
        if f.on_create == OnCreate::Required {
            required.push(f.name);
        }
    }
    let create = json!({"type": "object", "properties": props, "required": required});
    let update = json!({"type": "object", "properties": props});
    let list_path = format!("{collection}.json");
    let item_path = format!("{collection}/{{{}}}.json", m.id_param);
    let paging = vec![
        json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}),
        json!({"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}),
    ];
    add(
        paths,
        &list_path,
        "get",
        op(format!("List {}", r.collection), &list_path, paging, None),
    );
    add(
        paths,
        &list_path,
        "post",
        op(format!("Create a {}", r.name), &list_path, vec![], Some(create)),
    );
    add(
        paths,
        &item_path,
        "get",
        op(format!("Read a {}", r.name), &item_path, vec![], None),
    );
    add(
        paths,
        &item_path,
        "put",
        op(format!("Update a {}", r.name), &item_path, vec![], Some(update)),
    );
    add(
        paths,
        &item_path,
        "delete",
        op(format!("Delete a {}", r.name), &item_path, vec![], None),
    );
    for t in r.transitions {
        let p = format!("{collection}/{{{}}}/{}.json", m.id_param, t.event);
        add(
            paths,
            &p,
            "put",
            op(
                format!("{} a {} ({} → {})", t.event, r.name, t.column, t.to),
                &p,
                vec![],
                None,
            ),
        );
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (collection, m) in admin::catalog() {
        mount_paths(&mut paths, collection, &m);
    }
    for (method, path, summary) in OTHER {
        add(&mut paths, path, method, op((*summary).to_string(), path, vec![], None));
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tollgate control plane", "version": crate::VERSION,
                 "description": "3scale-compatible admin API (Account Management), service-management API and operations."},
        "components": {"securitySchemes": {
            "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
        "security": [{"access_token": []}, {"bearer": []}],
        "paths": paths,
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_catalog_and_its_events() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/admin/api/services.json"));
        assert!(paths["/admin/api/services/{service_id}/metrics.json"]["post"]["requestBody"].is_object());
        assert!(paths.contains_key("/admin/api/accounts/{account_id}/users/{id}/activate.json"));
        let create = &paths["/admin/api/services/{service_id}/proxy/mapping_rules.json"]["post"]["requestBody"]
            ["content"]["application/json"]["schema"];
        assert!(create["required"].as_array().unwrap().iter().any(|f| f == "pattern"));
        assert!(paths.contains_key("/transactions/authrep.json"));
    }
}
