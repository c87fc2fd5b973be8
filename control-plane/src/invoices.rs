//! Invoices as stored, and what the Billing API does with them (3scale's
//! `/api/invoices…`): create manual ones, list and read, edit while open or finalized, move
//! through the states (recording events), line items, earnings and the CSV export. The rules
//! themselves (states, totals, friendly ids) are in [`crate::invoice`]; the billing run and
//! the payment gateway build on the functions here.

use crate::billing::Settings;
use crate::db::{decimal, Db};
use crate::error::ApiError;
use crate::invoice::{self, LineType, State};
use crate::params::Params;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

/// Invoices per page, at most (3scale's default and maximum).
pub const PER_PAGE: i64 = 20;

#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: i64,
    pub account_id: i64,
    pub friendly_id: String,
    pub state: State,
    pub period: String,
    pub creation_type: String,
    pub currency: String,
    /// Frozen when issued; until then the account's current rate applies.
    pub vat_rate: Option<Decimal>,
    pub vat_code: Option<String>,
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

#[derive(Debug, Clone)]
pub struct Line {
    pub id: i64,
    pub invoice_id: i64,
    pub name: String,
    pub description: String,
    pub quantity: Decimal,
    pub cost: Decimal,
    pub kind: String,
    pub metric_id: Option<i64>,
    pub contract_type: Option<String>,
    pub contract_id: Option<i64>,
    pub plan_id: Option<i64>,
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
    pub metric_id: Option<i64>,
    pub contract_type: Option<String>,
    pub contract_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub billing_key: Option<String>,
}

const COLUMNS: &str =
    "id, account_id, friendly_id, state, period, creation_type, currency, vat_rate, vat_code, buyer, issuer,
    finalized_at, issued_on, due_on, paid_at, charging_retries_count, last_charged_on, created_at, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Invoice, ApiError> {
    let state: String = r.try_get("state")?;
    let vat: Option<String> = r.try_get("vat_rate")?;
    Ok(Invoice {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        friendly_id: r.try_get("friendly_id")?,
        state: State::parse(&state).ok_or_else(|| ApiError::Internal(format!("invoice state `{state}`")))?,
        period: r.try_get("period")?,
        creation_type: r.try_get("creation_type")?,
        currency: r.try_get("currency")?,
        vat_rate: vat.and_then(|v| v.parse().ok()),
        vat_code: r.try_get("vat_code")?,
        buyer: r.try_get("buyer")?,
        issuer: r.try_get("issuer")?,
        finalized_at: r.try_get("finalized_at")?,
        issued_on: r.try_get("issued_on")?,
        due_on: r.try_get("due_on")?,
        paid_at: r.try_get("paid_at")?,
        charging_retries_count: r.try_get("charging_retries_count")?,
        last_charged_on: r.try_get("last_charged_on")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn load(conn: &mut AnyConnection, id: i64) -> Result<Invoice, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM invoices WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(ApiError::NotFound)?;
    from_row(&row)
}

pub async fn lines(conn: &mut AnyConnection, invoice_id: i64) -> Result<Vec<Line>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, invoice_id, name, description, quantity, cost, type, metric_id, contract_type, contract_id, plan_id, created_at
         FROM line_items WHERE invoice_id = $1 ORDER BY id",
    )
    .bind(invoice_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Line {
                id: r.try_get("id")?,
                invoice_id: r.try_get("invoice_id")?,
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                quantity: decimal(r, "quantity")?,
                cost: decimal(r, "cost")?,
                kind: r.try_get("type")?,
                metric_id: r.try_get("metric_id")?,
                contract_type: r.try_get("contract_type")?,
                contract_id: r.try_get("contract_id")?,
                plan_id: r.try_get("plan_id")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// The VAT rate that applies: frozen on issue, else the account's.
async fn vat_rate(conn: &mut AnyConnection, inv: &Invoice) -> Result<Decimal, ApiError> {
    if let Some(rate) = inv.vat_rate {
        return Ok(rate);
    }
    let rate: Option<String> = sqlx::query_scalar("SELECT vat_rate FROM accounts WHERE id = $1")
        .bind(inv.account_id)
        .fetch_optional(conn)
        .await?;
    Ok(rate.and_then(|r| r.parse().ok()).unwrap_or(Decimal::ZERO))
}

/// The invoice's totals, and the VAT rate they were computed at.
pub async fn totals(conn: &mut AnyConnection, inv: &Invoice) -> Result<(invoice::Totals, Decimal), ApiError> {
    let costs: Vec<Decimal> = lines(conn, inv.id).await?.iter().map(|l| l.cost).collect();
    let rate = vat_rate(conn, inv).await?;
    Ok((invoice::totals(costs, rate, &inv.currency), rate))
}

fn money(d: Decimal) -> Value {
    crate::catalog::resource::money_number(&d.to_string())
}

/// The first and last day of a `YYYY-MM` period.
pub fn period_bounds(period: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first = invoice::parse_period(period)?;
    let last = first.checked_add_months(chrono::Months::new(1))?.pred_opt()?;
    Some((first, last))
}

/// The invoice as 3scale's JSON shows it.
pub async fn to_json(conn: &mut AnyConnection, inv: &Invoice) -> Result<Value, ApiError> {
    let (t, rate) = totals(conn, inv).await?;
    let (from, to) = period_bounds(&inv.period).unzip();
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    Ok(json!({
        "id": inv.id, "account_id": inv.account_id, "friendly_id": inv.friendly_id,
        "state": inv.state.as_str(), "creation_type": inv.creation_type,
        "period": {"from": from.map(|d| d.to_string()), "to": to.map(|d| d.to_string())},
        "month": inv.period,
        "currency": inv.currency,
        "cost": money(t.with_vat), "cost_without_vat": money(t.without_vat), "vat_amount": money(t.vat_amount),
        "vat_rate": money(rate), "vat_code": inv.vat_code,
        "buyer": parse(&inv.buyer), "issuer": parse(&inv.issuer),
        "finalized_at": inv.finalized_at, "issued_on": inv.issued_on, "due_on": inv.due_on, "paid_at": inv.paid_at,
        "charging_retries_count": inv.charging_retries_count, "last_charged_on": inv.last_charged_on,
        "created_at": inv.created_at, "updated_at": inv.updated_at,
    }))
}

pub fn line_json(l: &Line) -> Value {
    json!({
        "id": l.id, "invoice_id": l.invoice_id, "name": l.name, "description": l.description,
        "quantity": money(l.quantity), "cost": money(l.cost), "type": l.kind,
        "metric_id": l.metric_id, "contract_type": l.contract_type, "contract_id": l.contract_id,
        "plan_id": l.plan_id, "created_at": l.created_at,
    })
}

/// Creates an open invoice for `period` with the next friendly id of its numbering scope. The
/// counter is bumped first, in the caller's transaction: concurrent creations queue on it, and
/// a rolled-back creation gives its number back, so numbers have no gaps.
pub async fn create(
    conn: &mut AnyConnection,
    settings: &Settings,
    account_id: i64,
    period: &str,
    creation_type: &str,
) -> Result<Invoice, ApiError> {
    let scope = invoice::numbering_scope(period, &settings.numbering);
    let now = crate::time::now();
    loop {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_counters (scope, last) VALUES ($1, 1)
             ON CONFLICT (scope) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last",
        )
        .bind(&scope)
        .fetch_one(&mut *conn)
        .await?;
        // An admin may have renamed an invoice to a number not handed out yet: skip it.
        let row = sqlx::query(&format!(
            "INSERT INTO invoices (account_id, friendly_id, state, period, creation_type, currency, created_at, updated_at)
             VALUES ($1, $2, 'open', $3, $4, $5, $6, $6) ON CONFLICT (friendly_id) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(account_id)
        .bind(invoice::friendly_id(&scope, n))
        .bind(period)
        .bind(creation_type)
        .bind(&settings.currency)
        .bind(&now)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return from_row(&row);
        }
    }
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

fn period_param(p: &Params) -> Result<Option<String>, ApiError> {
    match p.get("period").map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if invoice::parse_period(s).is_some() => Ok(Some(s.to_string())),
        Some(_) => Err(ApiError::invalid("period", "must be a month, YYYY-MM")),
    }
}

/// `POST /api/invoices.json` (`account_id`) or `/api/accounts/{id}/invoices.json`: a manual
/// invoice for `period` (default: this month).
pub async fn create_manual(db: &Db, account_in_path: Option<i64>, p: &Params) -> Result<Value, ApiError> {
    let account_id = match account_in_path {
        Some(id) => id,
        None => p
            .parse::<i64>("account_id")?
            .ok_or_else(|| ApiError::invalid("account_id", "can't be blank"))?,
    };
    let period = period_param(p)?.unwrap_or_else(this_month);
    let settings = crate::billing::settings(db).await?;
    let mut tx = db.begin_write().await?;
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        // The path's account is a resource that is not there; a form's is a bad field.
        return Err(match account_in_path {
            Some(_) => ApiError::NotFound,
            None => ApiError::invalid("account_id", "does not exist"),
        });
    }
    let inv = create(&mut tx, &settings, account_id, &period, "manual").await?;
    let body = to_json(&mut tx, &inv).await?;
    tx.commit().await?;
    Ok(body)
}

/// Finds an invoice, of `account_id` if given (another account's is not found).
pub async fn find(conn: &mut AnyConnection, id: i64, account_id: Option<i64>) -> Result<Invoice, ApiError> {
    let inv = load(conn, id).await?;
    match account_id {
        Some(a) if a != inv.account_id => Err(ApiError::NotFound),
        _ => Ok(inv),
    }
}

pub async fn show(db: &Db, id: i64, account_id: Option<i64>) -> Result<Value, ApiError> {
    let mut conn = db.pool.acquire().await?;
    let inv = find(&mut conn, id, account_id).await?;
    to_json(&mut conn, &inv).await
}

/// Filters shared by the list and the CSV export: `account_id`, `state`, `month`.
struct Filter {
    account_id: Option<i64>,
    state: Option<String>,
    month: Option<String>,
}

fn filter(p: &Params, account_id: Option<i64>) -> Result<Filter, ApiError> {
    let state = p.get("state").map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = state {
        if State::parse(s).is_none() {
            let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::invalid("state", format!("must be one of {}", all.join(", "))));
        }
    }
    let month = p.get("month").map(str::trim).filter(|s| !s.is_empty());
    if month.is_some_and(|m| invoice::parse_period(m).is_none()) {
        return Err(ApiError::invalid("month", "must be a month, YYYY-MM"));
    }
    Ok(Filter {
        account_id: match account_id {
            Some(a) => Some(a),
            None => p.parse::<i64>("account_id")?,
        },
        state: state.map(str::to_string),
        month: month.map(str::to_string),
    })
}

async fn select(conn: &mut AnyConnection, f: &Filter, page: Option<(i64, i64)>) -> Result<Vec<Invoice>, ApiError> {
    let limit = page.map_or(String::new(), |(page, per)| {
        format!(" LIMIT {per} OFFSET {}", (page - 1) * per)
    });
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE ($1 = 0 OR account_id = $1) AND ($2 = '' OR state = $2)
         AND ($3 = '' OR period = $3) ORDER BY id{limit}"
    ))
    .bind(f.account_id.unwrap_or(0))
    .bind(f.state.as_deref().unwrap_or(""))
    .bind(f.month.as_deref().unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// `GET /api/invoices.json` and `/api/accounts/{id}/invoices.json`: filtered by `state`
/// and `month`, `page` and `per_page` (at most 20).
pub async fn list(db: &Db, account_id: Option<i64>, p: &Params) -> Result<Vec<Value>, ApiError> {
    let f = filter(p, account_id)?;
    let page = p.parse::<i64>("page")?.unwrap_or(1).max(1);
    let per = p.parse::<i64>("per_page")?.unwrap_or(PER_PAGE).clamp(1, PER_PAGE);
    let mut conn = db.pool.acquire().await?;
    let mut out = Vec::new();
    for inv in select(&mut conn, &f, Some((page, per))).await? {
        out.push(to_json(&mut conn, &inv).await?);
    }
    Ok(out)
}

fn not_editable(inv: &Invoice) -> ApiError {
    ApiError::invalid(
        "state",
        format!(
            "is {}: only open or finalized invoices can be changed",
            inv.state.as_str()
        ),
    )
}

/// `PUT /api/invoices/{id}.json`: `friendly_id`, `period`, while open or finalized.
pub async fn update(db: &Db, id: i64, p: &Params) -> Result<Value, ApiError> {
    let period = period_param(p)?;
    let friendly_id = p.get("friendly_id").map(str::trim).filter(|s| !s.is_empty());
    if friendly_id.is_some_and(|f| !invoice::is_friendly_id(f)) {
        return Err(ApiError::invalid(
            "friendly_id",
            "must be YYYY-MM-XXXXXXXX or YYYY-XXXXXXXX",
        ));
    }
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, id).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    if let Some(f) = friendly_id {
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM invoices WHERE friendly_id = $1 AND id <> $2")
            .bind(f)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(ApiError::invalid("friendly_id", "has already been taken"));
        }
    }
    sqlx::query(
        "UPDATE invoices SET friendly_id = COALESCE($1, friendly_id), period = COALESCE($2, period), updated_at = $3 WHERE id = $4",
    )
    .bind(friendly_id)
    .bind(period)
    .bind(crate::time::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let inv = load(&mut tx, id).await?;
    let body = to_json(&mut tx, &inv).await?;
    tx.commit().await?;
    Ok(body)
}

/// The buyer and issuer as they are now, to freeze on an invoice when it is issued.
async fn parties(
    conn: &mut AnyConnection,
    account_id: i64,
) -> Result<(Value, Value, Option<String>, Decimal), ApiError> {
    let row = sqlx::query("SELECT org_name, vat_code, vat_rate, billing_address FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?;
    let address: Option<String> = row.try_get("billing_address")?;
    let vat_code: Option<String> = row.try_get("vat_code")?;
    let buyer = json!({
        "org_name": row.try_get::<String, _>("org_name")?,
        "vat_code": vat_code,
        "address": address.and_then(|a| serde_json::from_str::<Value>(&a).ok()),
    });
    let provider = sqlx::query("SELECT org_name, settings FROM provider_account WHERE id = $1")
        .bind(crate::catalog::provider::PROVIDER_ID)
        .fetch_optional(&mut *conn)
        .await?;
    let issuer = match provider {
        Some(r) => {
            let settings: Value = serde_json::from_str(&r.try_get::<String, _>("settings")?).unwrap_or(json!({}));
            let field = |k: &str| settings.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "org_name": r.try_get::<String, _>("org_name")?,
                "address": {
                    "address1": field("org_legaladdress"), "address2": field("org_legaladdress_cont"),
                    "city": field("city"), "state": field("state_region"), "zip": field("zip"),
                    "country": field("country"), "phone": field("telephone_number"),
                },
                "vat_code": field("vat_code"),
            })
        }
        None => json!({"org_name": "Provider"}),
    };
    let rate = row.try_get::<String, _>("vat_rate")?.parse().unwrap_or(Decimal::ZERO);
    Ok((buyer, issuer, vat_code, rate))
}

/// Moves invoice `id` to `to` on `today`, or says why not (422 naming `state`). The move is
/// one conditional update (from a state `to` is reachable from), so two concurrent moves
/// cannot both apply. Issuing freezes VAT and both parties, sets issued on = today and due on
/// = today + 2 days. Each move is an event (`invoice.finalized`, `invoice.issued`, …) in the
/// same transaction.
pub async fn change_state(conn: &mut AnyConnection, id: i64, to: State, today: NaiveDate) -> Result<Invoice, ApiError> {
    let from: Vec<String> = to
        .reachable_from()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let from = if from.is_empty() {
        "''".to_string()
    } else {
        from.join(", ")
    };
    let now = crate::time::now();
    let guard = format!("WHERE id = $1 AND state IN ({from}) RETURNING {COLUMNS}");
    let row = match to {
        State::Pending => {
            let account: Option<i64> = sqlx::query_scalar("SELECT account_id FROM invoices WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            let (buyer, issuer, vat_code, rate) = parties(conn, account.ok_or(ApiError::NotFound)?).await?;
            let due = today + chrono::Days::new(2);
            sqlx::query(&format!(
                "UPDATE invoices SET state = 'pending', issued_on = $2, due_on = $3, vat_rate = $4, vat_code = $5,
                   buyer = $6, issuer = $7, finalized_at = COALESCE(finalized_at, $2), updated_at = $8 {guard}"
            ))
            .bind(id)
            .bind(today.to_string())
            .bind(due.to_string())
            .bind(rate.to_string())
            .bind(vat_code)
            .bind(buyer.to_string())
            .bind(issuer.to_string())
            .bind(&now)
            .fetch_optional(&mut *conn)
            .await?
        }
        State::Finalized => {
            sqlx::query(&format!(
                "UPDATE invoices SET state = 'finalized', finalized_at = $2, updated_at = $3 {guard}"
            ))
            .bind(id)
            .bind(today.to_string())
            .bind(&now)
            .fetch_optional(&mut *conn)
            .await?
        }
        State::Paid => {
            sqlx::query(&format!(
                "UPDATE invoices SET state = 'paid', paid_at = $2, updated_at = $2 {guard}"
            ))
            .bind(id)
            .bind(&now)
            .fetch_optional(&mut *conn)
            .await?
        }
        _ => {
            sqlx::query(&format!("UPDATE invoices SET state = $2, updated_at = $3 {guard}"))
                .bind(id)
                .bind(to.as_str())
                .bind(&now)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let Some(row) = row else {
        let current = load(conn, id).await?;
        return Err(invoice::transition(current.state, to)
            .err()
            .map(|m| ApiError::invalid("state", m))
            .unwrap_or_else(|| ApiError::invalid("state", "changed meanwhile; try again")));
    };
    let after = from_row(&row)?;
    let (t, _) = totals(conn, &after).await?;
    let kind = match to {
        State::Pending => "invoice.issued".to_string(),
        other => format!("invoice.{}", other.as_str()),
    };
    let payload = json!({
        "invoice_id": id, "friendly_id": after.friendly_id, "to": to.as_str(),
        "cost": t.with_vat.to_string(), "currency": after.currency, "due_on": after.due_on,
    });
    crate::events::record(conn, &kind, after.account_id, &payload).await?;
    Ok(after)
}

/// `PUT /api/invoices/{id}/state.json` with `state`.
pub async fn set_state(db: &Db, id: i64, p: &Params) -> Result<Value, ApiError> {
    let target = p.required("state")?.trim();
    let to = State::parse(target).filter(|s| *s != State::Open).ok_or_else(|| {
        ApiError::invalid(
            "state",
            "must be one of finalized, pending, paid, unpaid, failed, cancelled",
        )
    })?;
    let mut tx = db.begin_write().await?;
    let after = change_state(&mut tx, id, to, chrono::Utc::now().date_naive()).await?;
    let body = to_json(&mut tx, &after).await?;
    tx.commit().await?;
    Ok(body)
}

/// Adds a line to an invoice (the caller has checked it may); its id. A line the billing run
/// already added (same `billing_key`) is not added again: `None`.
pub async fn add_line(conn: &mut AnyConnection, invoice_id: i64, l: &NewLine) -> Result<Option<i64>, ApiError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO line_items (invoice_id, name, description, quantity, cost, type, metric_id, contract_type, contract_id, plan_id, billing_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (billing_key) DO NOTHING RETURNING id",
    )
    .bind(invoice_id)
    .bind(&l.name)
    .bind(&l.description)
    .bind(l.quantity.normalize().to_string())
    .bind(l.cost.normalize().to_string())
    .bind(l.kind.as_str())
    .bind(l.metric_id)
    .bind(&l.contract_type)
    .bind(l.contract_id)
    .bind(l.plan_id)
    .bind(&l.billing_key)
    .bind(crate::time::now())
    .fetch_optional(conn)
    .await?)
}

/// `POST /api/invoices/{id}/line_items.json`: `name`, `description`, `quantity`, `cost`
/// (the line's total), `type`, `metric_id`, `contract_id`, `plan_id`.
pub async fn create_line(db: &Db, invoice_id: i64, p: &Params) -> Result<Value, ApiError> {
    let mut errors = Vec::new();
    let name = p.get("name").map(str::trim).unwrap_or("");
    if name.is_empty() {
        errors.push(("name".to_string(), "can't be blank".to_string()));
    }
    let mut amount = |field: &str, default: Decimal| match p.get(field).map(str::trim).filter(|s| !s.is_empty()) {
        None => default,
        Some(v) => match v.parse::<Decimal>() {
            Ok(d) if d.normalize().scale() <= 4 => d.normalize(),
            _ => {
                errors.push((
                    field.to_string(),
                    format!("must be a number with at most 4 decimals, not `{v}`"),
                ));
                default
            }
        },
    };
    let quantity = amount("quantity", Decimal::ONE);
    let cost = amount("cost", Decimal::ZERO);
    let kind = match p.get("type").map(str::trim).filter(|s| !s.is_empty()) {
        None => LineType::Custom,
        Some(t) => LineType::parse(t).unwrap_or_else(|| {
            errors.push((
                "type".into(),
                "must be one of LineItem::PlanCost, LineItem::VariableCost, plan_cost, variable_cost, setup_fee, refund, upgrade, credit, custom".into(),
            ));
            LineType::Custom
        }),
    };
    let ids: Vec<Option<i64>> = ["metric_id", "contract_id", "plan_id"]
        .iter()
        .map(|f| {
            p.parse::<i64>(f).unwrap_or_else(|_| {
                errors.push(((*f).to_string(), "must be an id".into()));
                None
            })
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let line = NewLine {
        name: name.to_string(),
        description: p.get("description").unwrap_or("").to_string(),
        quantity,
        cost,
        kind,
        metric_id: ids[0],
        contract_type: ids[1].map(|_| "application".to_string()),
        contract_id: ids[1],
        plan_id: ids[2],
        billing_key: None,
    };
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, invoice_id).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    let id = add_line(&mut tx, invoice_id, &line)
        .await?
        .ok_or_else(|| ApiError::Internal("a line without a billing key conflicted".into()))?;
    sqlx::query("UPDATE invoices SET updated_at = $1 WHERE id = $2")
        .bind(crate::time::now())
        .bind(invoice_id)
        .execute(&mut *tx)
        .await?;
    let created = lines(&mut tx, invoice_id)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| ApiError::Internal("the new line is gone".into()))?;
    tx.commit().await?;
    Ok(line_json(&created))
}

pub async fn list_lines(db: &Db, invoice_id: i64) -> Result<Vec<Value>, ApiError> {
    let mut conn = db.pool.acquire().await?;
    load(&mut conn, invoice_id).await?;
    Ok(lines(&mut conn, invoice_id).await?.iter().map(line_json).collect())
}

pub async fn show_line(db: &Db, invoice_id: i64, line_id: i64) -> Result<Value, ApiError> {
    let mut conn = db.pool.acquire().await?;
    lines(&mut conn, invoice_id)
        .await?
        .iter()
        .find(|l| l.id == line_id)
        .map(line_json)
        .ok_or(ApiError::NotFound)
}

/// `DELETE /api/invoices/{id}/line_items/{line}.json`, while the invoice is open or finalized.
pub async fn delete_line(db: &Db, invoice_id: i64, line_id: i64) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, invoice_id).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    let done = sqlx::query("DELETE FROM line_items WHERE id = $1 AND invoice_id = $2")
        .bind(line_id)
        .bind(invoice_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Earnings by month (3scale's): per billing month, the total of its invoices except cancelled
/// ones, what is in process (open, finalized, pending), overdue (unpaid, failed) and paid.
/// Optional `month` or `year` filter.
pub async fn earnings(db: &Db, p: &Params) -> Result<Vec<Value>, ApiError> {
    let f = filter(p, None)?;
    let year = p.get("year").map(str::trim).filter(|s| !s.is_empty());
    if year.is_some_and(|y| y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::invalid("year", "must be a year, YYYY"));
    }
    let mut conn = db.pool.acquire().await?;
    let mut months: std::collections::BTreeMap<String, [Decimal; 4]> = Default::default();
    let currency = crate::billing::settings(db).await?.currency;
    for inv in select(&mut conn, &f, None).await? {
        if year.is_some_and(|y| !inv.period.starts_with(y)) || inv.state == State::Cancelled {
            continue;
        }
        let cost = totals(&mut conn, &inv).await?.0.with_vat;
        let m = months.entry(inv.period.clone()).or_default();
        m[0] += cost;
        let group = match inv.state {
            State::Open | State::Finalized | State::Pending => 1,
            State::Unpaid | State::Failed => 2,
            _ => 3,
        };
        m[group] += cost;
    }
    Ok(months
        .into_iter()
        .rev()
        .map(|(month, [total, in_process, overdue, paid])| {
            json!({
                "month": month, "currency": currency, "total": money(total), "in_process": money(in_process),
                "overdue": money(overdue), "paid": money(paid),
            })
        })
        .collect())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `GET /api/invoices.csv`: every invoice matching the list's filters, one row each.
pub async fn csv(db: &Db, p: &Params) -> Result<String, ApiError> {
    let f = filter(p, None)?;
    let mut conn = db.pool.acquire().await?;
    let mut out = String::from(
        "id,friendly_id,account_id,buyer,period,state,creation_type,currency,cost_without_vat,vat_rate,vat_amount,cost,issued_on,due_on,paid_at\n",
    );
    for inv in select(&mut conn, &f, None).await? {
        let (t, rate) = totals(&mut conn, &inv).await?;
        let buyer: Option<String> = sqlx::query_scalar("SELECT org_name FROM accounts WHERE id = $1")
            .bind(inv.account_id)
            .fetch_optional(&mut *conn)
            .await?;
        let row = [
            inv.id.to_string(),
            inv.friendly_id.clone(),
            inv.account_id.to_string(),
            buyer.unwrap_or_default(),
            inv.period.clone(),
            inv.state.as_str().to_string(),
            inv.creation_type.clone(),
            inv.currency.clone(),
            crate::billing::display(t.without_vat, &inv.currency),
            rate.normalize().to_string(),
            crate::billing::display(t.vat_amount, &inv.currency),
            crate::billing::display(t.with_vat, &inv.currency),
            inv.issued_on.clone().unwrap_or_default(),
            inv.due_on.clone().unwrap_or_default(),
            inv.paid_at.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = row.iter().map(|s| csv_field(s)).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// `GET /api/invoices/{id}.pdf`: rendered from what is stored (parties frozen on issue; an
/// invoice not issued yet shows them as they are now).
pub async fn pdf(db: &Db, id: i64) -> Result<Vec<u8>, ApiError> {
    let settings = crate::billing::settings(db).await?;
    let mut conn = db.pool.acquire().await?;
    let inv = load(&mut conn, id).await?;
    let all = lines(&mut conn, id).await?;
    let (t, rate) = totals(&mut conn, &inv).await?;
    let frozen = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
    let (buyer, issuer) = match (frozen(&inv.buyer), frozen(&inv.issuer)) {
        (Some(b), Some(i)) => (b, i),
        _ => {
            let (b, i, _, _) = parties(&mut conn, inv.account_id).await?;
            (b, i)
        }
    };
    let extras = crate::pdf::Extras {
        buyer: &buyer,
        issuer: &issuer,
        vat_rate: rate,
        totals: t,
        footnote: settings.invoice_footnote.as_deref(),
        vat_zero_text: settings.vat_zero_text.as_deref(),
    };
    Ok(crate::pdf::render(&inv, &all, &extras))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc. \"the\""), "\"Acme, Inc. \"\"the\"\"\"");
    }

    #[test]
    fn periods_have_bounds() {
        let (from, to) = period_bounds("2028-02").unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2028-02-01".into(), "2028-02-29".into())
        );
        assert!(period_bounds("2028-2").is_none());
    }
}
