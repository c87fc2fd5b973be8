//! Invoices as stored, and what the Billing API does with them (3scale's `/api/invoices…`):
//! create manual ones, list and read, edit while open or finalized, move through the states
//! (recording events), line items, earnings and the export. The rules themselves (states,
//! totals, friendly ids) are the domain's ([`tollgate_domain::invoice`]); the billing run and
//! the payment gateway build on the functions here. Lists read their lines and VAT rates in a
//! query each, not one per invoice.

use super::settings;
use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::multirow::{id_list, rows_per_statement, values, Placeholders};
use crate::rows::{decimal, opt_decimal};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};
use tollgate_domain::billing::Settings;
use tollgate_domain::ids::{AccountId, InvoiceId, LineId, MetricId, PlanId};
use tollgate_domain::invoice::{
    self, Address, CreationType, Document, Earnings, Invoice, Line, NewLine, Party, State, Totals,
};

/// Invoices per page, at most (3scale's default and maximum).
pub const PER_PAGE: i64 = 20;

/// An invoice with its totals, and the VAT rate they were computed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub invoice: Invoice,
    pub totals: Totals,
    pub vat_rate: Decimal,
}

const COLUMNS: &str =
    "id, account_id, friendly_id, state, period, creation_type, currency, vat_rate, vat_code, buyer, issuer,
    finalized_at, issued_on, due_on, paid_at, charging_retries_count, last_charged_on, created_at, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Invoice> {
    let state: String = r.try_get("state")?;
    let creation: String = r.try_get("creation_type")?;
    Ok(Invoice {
        id: InvoiceId::new(r.try_get("id")?),
        account_id: AccountId::new(r.try_get("account_id")?),
        friendly_id: r.try_get("friendly_id")?,
        state: State::parse(&state).ok_or_else(|| StoreError::Internal(format!("invoice state `{state}`")))?,
        period: r.try_get("period")?,
        creation_type: CreationType::parse(&creation)
            .ok_or_else(|| StoreError::Internal(format!("creation type `{creation}`")))?,
        currency: r.try_get("currency")?,
        vat_rate: opt_decimal(r, "vat_rate")?,
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

pub async fn load(conn: &mut AnyConnection, id: InvoiceId) -> Result<Invoice> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM invoices WHERE id = $1"))
        .bind(id.get())
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

fn line_from_row(r: &sqlx::any::AnyRow) -> Result<(InvoiceId, Line)> {
    Ok((
        InvoiceId::new(r.try_get("invoice_id")?),
        Line {
            id: LineId::new(r.try_get("id")?),
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            quantity: decimal(r, "quantity")?,
            cost: decimal(r, "cost")?,
            kind: r.try_get("type")?,
            metric_id: r.try_get::<Option<i64>, _>("metric_id")?.map(MetricId::new),
            contract_type: r.try_get("contract_type")?,
            contract_id: r.try_get("contract_id")?,
            plan_id: r.try_get::<Option<i64>, _>("plan_id")?.map(PlanId::new),
            created_at: r.try_get("created_at")?,
        },
    ))
}

const LINE_COLUMNS: &str =
    "id, invoice_id, name, description, quantity, cost, type, metric_id, contract_type, contract_id, plan_id, created_at";

pub async fn lines(conn: &mut AnyConnection, invoice: InvoiceId) -> Result<Vec<Line>> {
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM line_items WHERE invoice_id = $1 ORDER BY id"
    ))
    .bind(invoice.get())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| line_from_row(r).map(|(_, l)| l)).collect()
}

/// Invoices with their totals: two queries in all (the lines, the accounts' VAT rates).
pub async fn views(conn: &mut AnyConnection, invoices: Vec<Invoice>) -> Result<Vec<View>> {
    if invoices.is_empty() {
        return Ok(Vec::new());
    }
    let mut costs: HashMap<InvoiceId, Vec<Decimal>> = HashMap::new();
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM line_items WHERE invoice_id IN ({}) ORDER BY id",
        id_list(invoices.iter().map(|i| i.id.get()))
    ))
    .fetch_all(&mut *conn)
    .await?;
    for r in &rows {
        let (invoice, line) = line_from_row(r)?;
        costs.entry(invoice).or_default().push(line.cost);
    }
    let unfrozen: Vec<&Invoice> = invoices.iter().filter(|i| i.vat_rate.is_none()).collect();
    let mut rates: HashMap<i64, Decimal> = HashMap::new();
    if !unfrozen.is_empty() {
        let rows = sqlx::query(&format!(
            "SELECT id, vat_rate FROM accounts WHERE id IN ({})",
            id_list(unfrozen.iter().map(|i| i.account_id.get()))
        ))
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            rates.insert(r.try_get("id")?, opt_decimal(r, "vat_rate")?.unwrap_or_default());
        }
    }
    Ok(invoices
        .into_iter()
        .map(|inv| {
            let rate = inv
                .vat_rate
                .unwrap_or_else(|| rates.get(&inv.account_id.get()).copied().unwrap_or_default());
            let totals = invoice::totals(costs.remove(&inv.id).unwrap_or_default(), rate, &inv.currency);
            View {
                invoice: inv,
                totals,
                vat_rate: rate,
            }
        })
        .collect())
}

/// One invoice with its totals.
pub async fn view(conn: &mut AnyConnection, inv: Invoice) -> Result<View> {
    views(conn, vec![inv])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("an invoice lost its view".into()))
}

/// Creates an open invoice for `period` with the next friendly id of its numbering scope.
pub async fn create(
    conn: &mut AnyConnection,
    settings: &Settings,
    account: AccountId,
    period: &str,
    creation_type: CreationType,
) -> Result<Invoice> {
    create_many(conn, settings, &[(account, period.to_string())], creation_type)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("an invoice was not created".into()))
}

/// Creates an open invoice for each (account, period), in order, each with the next friendly
/// id of its numbering scope: a scope's counter is moved once by as many invoices as it
/// numbers, then they are inserted together. The counter is bumped first, in the caller's
/// transaction: concurrent creations queue on it, and a rolled-back creation gives its numbers
/// back, so numbers have no gaps. A number an admin already gave an invoice by renaming it
/// is skipped: that invoice gets the next one.
pub async fn create_many(
    conn: &mut AnyConnection,
    settings: &Settings,
    wanted: &[(AccountId, String)],
    creation_type: CreationType,
) -> Result<Vec<Invoice>> {
    const BOUND: usize = 8;
    let now = crate::time::now();
    let mut by_scope: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, period)) in wanted.iter().enumerate() {
        by_scope
            .entry(invoice::numbering_scope(period, settings.numbering))
            .or_default()
            .push(i);
    }
    let mut made: Vec<Option<Invoice>> = vec![None; wanted.len()];
    for (scope, indexes) in by_scope {
        let mut left = indexes;
        while !left.is_empty() {
            let mut taken = Vec::new();
            for part in left.chunks(rows_per_statement(BOUND)) {
                let count = i64::try_from(part.len()).unwrap_or(i64::MAX);
                let last: i64 = sqlx::query_scalar(
                    "INSERT INTO invoice_counters (scope, last) VALUES ($1, $2)
                     ON CONFLICT (scope) DO UPDATE SET last = invoice_counters.last + excluded.last RETURNING last",
                )
                .bind(&scope)
                .bind(count)
                .fetch_one(&mut *conn)
                .await?;
                let numbers: Vec<String> = (last - count + 1..=last)
                    .map(|n| invoice::friendly_id(&scope, n))
                    .collect();
                let sql = format!(
                    "INSERT INTO invoices (account_id, friendly_id, state, period, creation_type, currency, created_at, updated_at)
                     VALUES {} ON CONFLICT (friendly_id) DO NOTHING RETURNING {COLUMNS}",
                    values(Placeholders::of(conn), part.len(), BOUND)
                );
                let mut query = sqlx::query(&sql);
                for (&i, number) in part.iter().zip(&numbers) {
                    let (account, period) = &wanted[i];
                    query = query
                        .bind(account.get())
                        .bind(number.clone())
                        .bind(State::Open.as_str())
                        .bind(period.clone())
                        .bind(creation_type.as_str())
                        .bind(settings.currency.clone())
                        .bind(now.clone())
                        .bind(now.clone());
                }
                let mut rows: HashMap<String, Invoice> = HashMap::new();
                for row in query.fetch_all(&mut *conn).await? {
                    let inv = from_row(&row)?;
                    rows.insert(inv.friendly_id.clone(), inv);
                }
                for (&i, number) in part.iter().zip(&numbers) {
                    match rows.remove(number) {
                        Some(inv) => made[i] = Some(inv),
                        None => taken.push(i),
                    }
                }
            }
            left = taken;
        }
    }
    made.into_iter()
        .map(|m| m.ok_or_else(|| StoreError::Internal("an invoice was not created".into())))
        .collect()
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// Where a manual invoice's account comes from: the path (a resource that must exist: not
/// found) or a form's field (a bad field: invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountFrom {
    Path(AccountId),
    Field(AccountId),
}

/// A manual invoice for `period` (default: this month).
pub async fn create_manual(db: &Db, account: AccountFrom, period: Option<String>) -> Result<View> {
    let period = period.unwrap_or_else(this_month);
    let settings = settings::get(db).await?;
    let mut tx = db.begin_write().await?;
    let id = match account {
        AccountFrom::Path(id) | AccountFrom::Field(id) => id,
    };
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(id.get())
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(match account {
            AccountFrom::Path(_) => StoreError::NotFound,
            AccountFrom::Field(_) => StoreError::invalid("account_id", "does not exist"),
        });
    }
    let inv = create(&mut tx, &settings, id, &period, CreationType::Manual).await?;
    let v = view(&mut tx, inv).await?;
    tx.commit().await?;
    Ok(v)
}

/// An invoice, of `account` if given (another account's is not found).
pub async fn find(conn: &mut AnyConnection, id: InvoiceId, account: Option<AccountId>) -> Result<Invoice> {
    let inv = load(conn, id).await?;
    match account {
        Some(a) if a != inv.account_id => Err(StoreError::NotFound),
        _ => Ok(inv),
    }
}

pub async fn show(db: &Db, id: InvoiceId, account: Option<AccountId>) -> Result<View> {
    let mut conn = db.pool.acquire().await?;
    let inv = find(&mut conn, id, account).await?;
    view(&mut conn, inv).await
}

/// Which invoices: of an account, in a state, of a month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub account_id: Option<AccountId>,
    pub state: Option<State>,
    pub month: Option<String>,
}

impl tollgate_domain::form::FromForm for Filter {
    fn from_form(p: &tollgate_domain::form::Form) -> Result<Self, tollgate_domain::Invalid> {
        use tollgate_domain::Invalid;
        let state = match p.text("state") {
            None => None,
            Some(s) => Some(State::parse(s).ok_or_else(|| {
                let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                Invalid::field("state", format!("must be one of {}", all.join(", ")))
            })?),
        };
        let month = p.text("month");
        if month.is_some_and(|m| invoice::parse_period(m).is_none()) {
            return Err(Invalid::field("month", "must be a month, YYYY-MM"));
        }
        Ok(Filter {
            account_id: p.parse("account_id")?,
            state,
            month: month.map(str::to_string),
        })
    }
}

async fn select(conn: &mut AnyConnection, f: &Filter, page: Option<(i64, i64)>) -> Result<Vec<Invoice>> {
    let limit = page.map_or(String::new(), |(page, per)| {
        format!(" LIMIT {per} OFFSET {}", (page - 1) * per)
    });
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM invoices WHERE ($1 = 0 OR account_id = $1) AND ($2 = '' OR state = $2)
         AND ($3 = '' OR period = $3) ORDER BY id{limit}"
    ))
    .bind(f.account_id.map_or(0, AccountId::get))
    .bind(f.state.map_or("", State::as_str))
    .bind(f.month.as_deref().unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One page of the invoices `f` selects (`per_page` at most [`PER_PAGE`]).
pub async fn list(db: &Db, f: &Filter, page: i64, per_page: i64) -> Result<Vec<View>> {
    let (page, per) = (page.max(1), per_page.clamp(1, PER_PAGE));
    let mut conn = db.pool.acquire().await?;
    let invoices = select(&mut conn, f, Some((page, per))).await?;
    views(&mut conn, invoices).await
}

fn not_editable(inv: &Invoice) -> StoreError {
    StoreError::invalid(
        "state",
        format!(
            "is {}: only open or finalized invoices can be changed",
            inv.state.as_str()
        ),
    )
}

/// `PUT /api/invoices/{id}.json`: `friendly_id`, `period`, while open or finalized.
pub async fn update(db: &Db, id: InvoiceId, friendly_id: Option<&str>, period: Option<&str>) -> Result<View> {
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, id).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    if let Some(f) = friendly_id {
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM invoices WHERE friendly_id = $1 AND id <> $2")
            .bind(f)
            .bind(id.get())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::invalid("friendly_id", "has already been taken"));
        }
    }
    sqlx::query(
        "UPDATE invoices SET friendly_id = COALESCE($1, friendly_id), period = COALESCE($2, period), updated_at = $3 WHERE id = $4",
    )
    .bind(friendly_id)
    .bind(period)
    .bind(crate::time::now())
    .bind(id.get())
    .execute(&mut *tx)
    .await?;
    let inv = load(&mut tx, id).await?;
    let v = view(&mut tx, inv).await?;
    tx.commit().await?;
    Ok(v)
}

/// A buyer as it is now, to freeze on an invoice when it is issued; with its VAT code and rate.
struct Buyer {
    party: Party,
    vat_code: Option<String>,
    vat_rate: Decimal,
}

/// The buyers of `accounts` (a query for them all) and the issuer, as they are now.
async fn parties_of(conn: &mut AnyConnection, accounts: &[AccountId]) -> Result<(HashMap<AccountId, Buyer>, Party)> {
    let rows = sqlx::query(&format!(
        "SELECT id, org_name, vat_code, vat_rate, billing_address FROM accounts WHERE id IN ({})",
        id_list(accounts.iter().map(|a| a.get()))
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut buyers = HashMap::with_capacity(rows.len());
    for row in &rows {
        let address: Option<String> = row.try_get("billing_address")?;
        let vat_code: Option<String> = row.try_get("vat_code")?;
        let party = Party {
            org_name: Some(row.try_get("org_name")?),
            vat_code: vat_code.clone(),
            address: address.and_then(|a| serde_json::from_str::<Address>(&a).ok()),
        };
        let buyer = Buyer {
            party,
            vat_code,
            vat_rate: opt_decimal(row, "vat_rate")?.unwrap_or_default(),
        };
        buyers.insert(AccountId::new(row.try_get("id")?), buyer);
    }
    let provider = crate::catalog::provider::account_in(conn).await?;
    let field = |k: &str| provider.settings.get(k).cloned();
    let issuer = Party {
        org_name: Some(provider.org_name.clone()),
        vat_code: field("vat_code"),
        address: Some(Address {
            address1: field("org_legaladdress"),
            address2: field("org_legaladdress_cont"),
            city: field("city"),
            state: field("state_region"),
            zip: field("zip"),
            country: field("country"),
            phone: field("telephone_number"),
            ..Address::default()
        }),
    };
    Ok((buyers, issuer))
}

fn party_text(p: &Party) -> Result<String> {
    serde_json::to_string(p).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Moves invoice `id` to `to` on `today`, or says why not (see [`change_states`]).
pub async fn change_state(conn: &mut AnyConnection, id: InvoiceId, to: State, today: NaiveDate) -> Result<Invoice> {
    change_states(conn, &[id], to, today)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("an invoice move was lost".into()))
}

/// Moves invoices `ids` (each once) to `to` on `today`, all or none: if one cannot move, says
/// why (invalid naming `state`; not found). A move is a conditional update (from a state `to`
/// is reachable from), so two concurrent moves cannot both apply; the invoices move in a
/// statement per few thousand. Issuing freezes VAT and both parties, sets issued on = today
/// and due on = today + 2 days. Each move is an event (`invoice.finalized`, `invoice.issued`,
/// …) in the same transaction. The moved invoices, in the order of `ids`.
pub async fn change_states(
    conn: &mut AnyConnection,
    ids: &[InvoiceId],
    to: State,
    today: NaiveDate,
) -> Result<Vec<Invoice>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
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
    let mut moved: HashMap<InvoiceId, Invoice> = HashMap::with_capacity(ids.len());
    if to == State::Pending {
        // Each buyer's party, frozen on its invoices: the values ride along in the statement.
        const BOUND: usize = 8;
        let owners = sqlx::query(&format!(
            "SELECT id, account_id FROM invoices WHERE id IN ({})",
            id_list(ids.iter().map(|i| i.get()))
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut owner: HashMap<InvoiceId, AccountId> = HashMap::with_capacity(owners.len());
        for r in &owners {
            owner.insert(
                InvoiceId::new(r.try_get("id")?),
                AccountId::new(r.try_get("account_id")?),
            );
        }
        let accounts: Vec<AccountId> = owner.values().copied().collect();
        let (buyers, issuer) = parties_of(conn, &accounts).await?;
        let issuer = party_text(&issuer)?;
        let known: Vec<InvoiceId> = ids.iter().copied().filter(|id| owner.contains_key(id)).collect();
        let (today, due) = (today.to_string(), (today + chrono::Days::new(2)).to_string());
        for part in known.chunks(rows_per_statement(BOUND)) {
            let sql = format!(
                "UPDATE invoices SET state = 'pending', vat_rate = v.column2, vat_code = v.column3, buyer = v.column4,
                   issuer = v.column5, issued_on = v.column6, due_on = v.column7,
                   finalized_at = COALESCE(finalized_at, v.column6), updated_at = v.column8
                 FROM (VALUES {}) AS v WHERE invoices.id = v.column1 AND invoices.state IN ({from}) RETURNING {COLUMNS}",
                values(Placeholders::of(conn), part.len(), BOUND)
            );
            let mut query = sqlx::query(&sql);
            for id in part {
                let buyer = owner.get(id).and_then(|a| buyers.get(a)).ok_or(StoreError::NotFound)?;
                query = query
                    .bind(id.get())
                    .bind(buyer.vat_rate.to_string())
                    .bind(buyer.vat_code.clone())
                    .bind(party_text(&buyer.party)?)
                    .bind(issuer.clone())
                    .bind(today.clone())
                    .bind(due.clone())
                    .bind(now.clone());
            }
            for row in query.fetch_all(&mut *conn).await? {
                let inv = from_row(&row)?;
                moved.insert(inv.id, inv);
            }
        }
    } else {
        let (set, binds) = match to {
            State::Finalized => (
                "state = 'finalized', finalized_at = $1, updated_at = $2",
                [today.to_string(), now],
            ),
            State::Paid => ("state = 'paid', paid_at = $1, updated_at = $2", [now.clone(), now]),
            _ => ("state = $1, updated_at = $2", [to.as_str().to_string(), now]),
        };
        for part in ids.chunks(rows_per_statement(1)) {
            let sql = format!(
                "UPDATE invoices SET {set} WHERE id IN ({}) AND state IN ({from}) RETURNING {COLUMNS}",
                id_list(part.iter().map(|i| i.get()))
            );
            let query = sqlx::query(&sql).bind(binds[0].clone()).bind(binds[1].clone());
            for row in query.fetch_all(&mut *conn).await? {
                let inv = from_row(&row)?;
                moved.insert(inv.id, inv);
            }
        }
    }
    if let Some(stuck) = ids.iter().find(|id| !moved.contains_key(id)) {
        let current = load(conn, *stuck).await?;
        return Err(invoice::transition(current.state, to)
            .err()
            .map(|m| StoreError::invalid("state", m))
            .unwrap_or_else(|| StoreError::invalid("state", "changed meanwhile; try again")));
    }
    let after: Vec<Invoice> = ids.iter().filter_map(|id| moved.remove(id)).collect();
    let kind = match to {
        State::Pending => "invoice.issued".to_string(),
        other => format!("invoice.{}", other.as_str()),
    };
    let events: Vec<crate::events::New<'_>> = views(conn, after.clone())
        .await?
        .into_iter()
        .map(|v| {
            let inv = v.invoice;
            crate::events::New {
                kind: &kind,
                account_id: Some(inv.account_id),
                service_id: None,
                actor: crate::events::Actor::System,
                payload: json!({
                    "invoice_id": inv.id, "friendly_id": inv.friendly_id, "to": to.as_str(),
                    "cost": v.totals.with_vat.to_string(), "currency": inv.currency, "due_on": inv.due_on,
                }),
            }
        })
        .collect();
    crate::events::record_all(conn, &events).await?;
    Ok(after)
}

/// `PUT /api/invoices/{id}/state.json`.
pub async fn set_state(db: &Db, id: InvoiceId, to: State) -> Result<View> {
    let mut tx = db.begin_write().await?;
    let after = change_state(&mut tx, id, to, chrono::Utc::now().date_naive()).await?;
    let v = view(&mut tx, after).await?;
    tx.commit().await?;
    Ok(v)
}

/// Adds a line to an invoice (the caller has checked it may); its id. A line the billing run
/// already added (same `billing_key`) is not added again: `None`.
pub async fn add_line(conn: &mut AnyConnection, invoice: InvoiceId, l: &NewLine) -> Result<Option<LineId>> {
    Ok(add_lines(conn, &[(invoice, l)]).await?.pop())
}

/// Adds lines to invoices (the caller has checked they may take them), a statement per few
/// thousand; the ids of those added. A line whose `billing_key` is on an invoice already is
/// not added again.
pub async fn add_lines(conn: &mut AnyConnection, lines: &[(InvoiceId, &NewLine)]) -> Result<Vec<LineId>> {
    let now = crate::time::now();
    let insert = |values: &str| {
        format!(
            "INSERT INTO line_items (invoice_id, name, description, quantity, cost, type, metric_id, contract_type,
               contract_id, plan_id, billing_key, created_at)
             VALUES {values} ON CONFLICT (billing_key) DO NOTHING RETURNING id"
        )
    };
    let rows = crate::multirow::run(conn, lines, 12, insert, |q, (invoice, l)| {
        q.bind(invoice.get())
            .bind(l.name.clone())
            .bind(l.description.clone())
            .bind(l.quantity.normalize().to_string())
            .bind(l.cost.normalize().to_string())
            .bind(l.kind.as_str())
            .bind(l.metric_id.map(MetricId::get))
            .bind(l.contract_type.clone())
            .bind(l.contract_id)
            .bind(l.plan_id.map(PlanId::get))
            .bind(l.billing_key.clone())
            .bind(now.clone())
    })
    .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("id").map(LineId::new))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(ids)
}

/// `POST /api/invoices/{id}/line_items.json`, while the invoice is open or finalized.
pub async fn create_line(db: &Db, invoice: InvoiceId, line: &NewLine) -> Result<Line> {
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, invoice).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    let id = add_line(&mut tx, invoice, line)
        .await?
        .ok_or_else(|| StoreError::Internal("a line without a billing key conflicted".into()))?;
    sqlx::query("UPDATE invoices SET updated_at = $1 WHERE id = $2")
        .bind(crate::time::now())
        .bind(invoice.get())
        .execute(&mut *tx)
        .await?;
    let created = lines(&mut tx, invoice)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| StoreError::Internal("the new line is gone".into()))?;
    tx.commit().await?;
    Ok(created)
}

pub async fn list_lines(db: &Db, invoice: InvoiceId) -> Result<Vec<Line>> {
    let mut conn = db.pool.acquire().await?;
    load(&mut conn, invoice).await?;
    lines(&mut conn, invoice).await
}

pub async fn show_line(db: &Db, invoice: InvoiceId, line: LineId) -> Result<Line> {
    let mut conn = db.pool.acquire().await?;
    lines(&mut conn, invoice)
        .await?
        .into_iter()
        .find(|l| l.id == line)
        .ok_or(StoreError::NotFound)
}

/// `DELETE /api/invoices/{id}/line_items/{line}.json`, while the invoice is open or finalized.
pub async fn delete_line(db: &Db, invoice: InvoiceId, line: LineId) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let inv = load(&mut tx, invoice).await?;
    if !inv.state.editable() {
        return Err(not_editable(&inv));
    }
    let done = sqlx::query("DELETE FROM line_items WHERE id = $1 AND invoice_id = $2")
        .bind(line.get())
        .bind(invoice.get())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Earnings by month, newest first, in the billing currency; optionally of one year.
pub async fn earnings(db: &Db, f: &Filter, year: Option<&str>) -> Result<(String, Vec<Earnings>)> {
    let mut conn = db.pool.acquire().await?;
    let currency = settings::get_in(&mut conn).await?.currency;
    let invoices: Vec<Invoice> = select(&mut conn, f, None)
        .await?
        .into_iter()
        .filter(|i| year.is_none_or(|y| i.period.starts_with(y)))
        .collect();
    let mut months: std::collections::BTreeMap<String, Earnings> = Default::default();
    for v in views(&mut conn, invoices).await? {
        let month = v.invoice.period.clone();
        months
            .entry(month.clone())
            .or_insert_with(|| Earnings {
                month,
                total: Decimal::ZERO,
                in_process: Decimal::ZERO,
                overdue: Decimal::ZERO,
                paid: Decimal::ZERO,
            })
            .add(v.invoice.state, v.totals.with_vat);
    }
    Ok((currency, months.into_values().rev().collect()))
}

/// Every invoice `f` selects, with its totals and the buyer's name (for the CSV export).
pub async fn export(db: &Db, f: &Filter) -> Result<Vec<(View, Option<String>)>> {
    let mut conn = db.pool.acquire().await?;
    let invoices = select(&mut conn, f, None).await?;
    let names: HashMap<i64, String> = if invoices.is_empty() {
        HashMap::new()
    } else {
        sqlx::query(&format!(
            "SELECT id, org_name FROM accounts WHERE id IN ({})",
            id_list(invoices.iter().map(|i| i.account_id.get()))
        ))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("org_name")?)))
        .collect::<Result<_, sqlx::Error>>()?
    };
    Ok(views(&mut conn, invoices)
        .await?
        .into_iter()
        .map(|v| {
            let name = names.get(&v.invoice.account_id.get()).cloned();
            (v, name)
        })
        .collect())
}

/// Everything an invoice shows (its PDF, its page): rendered from what is stored — parties
/// frozen on issue; an invoice not issued yet shows them as they are now.
pub async fn document(db: &Db, id: InvoiceId) -> Result<Document> {
    let mut conn = db.pool.acquire().await?;
    let settings = settings::get_in(&mut conn).await?;
    let inv = load(&mut conn, id).await?;
    let all = lines(&mut conn, id).await?;
    let v = view(&mut conn, inv).await?;
    let frozen = |s: &Option<String>| s.as_deref().and_then(|s| serde_json::from_str::<Party>(s).ok());
    let (buyer, issuer) = match (frozen(&v.invoice.buyer), frozen(&v.invoice.issuer)) {
        (Some(b), Some(i)) => (b, i),
        _ => {
            let account = v.invoice.account_id;
            let (mut buyers, issuer) = parties_of(&mut conn, &[account]).await?;
            (buyers.remove(&account).ok_or(StoreError::NotFound)?.party, issuer)
        }
    };
    Ok(Document {
        invoice: v.invoice,
        lines: all,
        totals: v.totals,
        vat_rate: v.vat_rate,
        buyer,
        issuer,
        footnote: settings.invoice_footnote,
        vat_zero_text: settings.vat_zero_text,
    })
}
