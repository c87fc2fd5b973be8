//! The catalog's screens (3scale's Audience and Products: accounts, their users and
//! applications, products with their metrics, methods, mapping rules, plans, limits and
//! pricing rules, backends, provider users), one implementation for every resource the API
//! mounts: a table with paging, sorting and search; a form to create one; its page with the
//! fields it can change, its state events and its delete (after a confirmation). Each action
//! calls the API's own store function ([`crud`]) with the form as the API takes it, so the
//! checks, the 422 field errors and the webhooks are the API's; what differs by resource is
//! only what the screen offers (the choices for a plan or a metric, an account's signup, an
//! application's keys).

use super::guard::{guard, Clearance, Cleared};
use super::pages::Frame;
use super::render::html;
use super::session::Refused;
use crate::crud::{Mount, MOUNTS};
use crate::routes::ServiceScope;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use tollgate_domain::form::{Form, Page};
use tollgate_domain::ids::{AccountId, ApplicationId};
use tollgate_store::catalog::crud as store;
use tollgate_store::catalog::resource::{Cell, EventInput, Field, Kind, Listing, OnCreate, Order, Record};
use tollgate_store::catalog::{accounts, applications, backends, mapping_rules, metrics, plans, provider, services};

type PathMap = HashMap<String, String>;
pub type Errors = BTreeMap<String, Vec<String>>;

/// A list's rows per page.
const PER_PAGE: i64 = 20;

/// The console path of an API collection (`/admin/api/services` → `/console/services`).
pub fn base_of(m: &Mount) -> String {
    format!("/console{}", m.collection.trim_start_matches("/admin/api"))
}

fn item_of(m: &Mount) -> String {
    format!("{}/{{{}}}", base_of(m), m.id_param)
}

/// `template` with its `{name}` parameters filled from `path`.
fn fill(template: &str, path: &PathMap) -> String {
    let mut out = template.to_string();
    for (k, v) in path {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The first id of a scope (the service or account a screen hangs off); its route always has
/// one, so a missing one is a mistake of ours, not a panic.
fn owner_of(scope: &[i64]) -> Result<i64, crate::error::ApiError> {
    scope
        .first()
        .copied()
        .ok_or_else(|| crate::error::ApiError::Internal("a screen without its owner in the path".into()))
}

/// The services a member is limited to, as raw ids (`None`: all).
fn service_ids(c: &Cleared) -> Option<Vec<i64>> {
    c.staff
        .principal
        .services()
        .map(|ids| ids.iter().map(|s| s.get()).collect())
}

fn is(m: &Mount, e: &'static store::Entity) -> bool {
    std::ptr::eq(m.entity, e)
}

/// Every mount's screens, each behind its guard.
pub fn router(app: AppState) -> Router<AppState> {
    let mut r = Router::new();
    for m in &MOUNTS {
        // The API's rule: the service a path names — a product's own page names it by its id.
        let clearance = |path: &str| Clearance {
            app: app.clone(),
            section: m.section,
            scope: ServiceScope::of(path),
        };
        let (base, item) = (base_of(m), item_of(m));
        let lists = Router::new()
            .route(
                &base,
                get(move |s, c, p| list(m, s, c, p)).post(move |s, c, p| create(m, s, c, p)),
            )
            .route(&format!("{base}/new"), get(move |s, c, p| new_form(m, s, c, p)))
            .layer(axum::middleware::from_fn_with_state(clearance(m.collection), guard));
        let records = Router::new()
            .route(
                &item,
                get(move |s, c, p| show(m, s, c, p)).post(move |s, c, p| update(m, s, c, p)),
            )
            .route(
                &format!("{item}/delete"),
                get(move |s, c, p| confirm_delete(m, s, c, p)).post(move |s, c, p| delete(m, s, c, p)),
            )
            .route(
                &format!("{item}/events/{{event}}"),
                post(move |s, c, p| event(m, s, c, p)),
            );
        let records = if is(m, &applications::APPLICATIONS) {
            records
                .route(&format!("{item}/keys"), post(add_key))
                .route(&format!("{item}/keys/delete"), post(delete_key))
                .route(&format!("{item}/user_key"), post(regenerate_user_key))
        } else if is(m, &plans::APPLICATION_PLANS) {
            records.route(&format!("{item}/copy"), post(move |s, c, p| copy_plan(m, s, c, p)))
        } else if is(m, &accounts::ACCOUNTS) {
            records.route(&format!("{item}/billing_address"), post(set_billing_address))
        } else if is(m, &provider::PROVIDER_USERS) {
            records.route(&format!("{item}/permissions"), post(update_permissions))
        } else {
            records
        };
        let api_item = format!("{}/{{{}}}", m.collection, m.id_param);
        r = r
            .merge(lists)
            .merge(records.layer(axum::middleware::from_fn_with_state(clearance(&api_item), guard)));
    }
    // Audience › Applications: every account's, found by name, user_key or app_id (Ch. 13).
    r = r.route(
        &base_of(&ALL_APPLICATIONS),
        get(move |s, c, p| list(&ALL_APPLICATIONS, s, c, p)).layer(axum::middleware::from_fn_with_state(
            Clearance {
                app: app.clone(),
                section: tollgate_domain::access::Section::Partners,
                scope: ServiceScope::None,
            },
            guard,
        )),
    );
    // An application plan's limits and pricing rules hang off `/application_plans/{plan_id}`:
    // that path leads to the plan's page.
    let plans_clearance = Clearance {
        app: app.clone(),
        section: tollgate_domain::access::Section::Plans,
        scope: ServiceScope::ApplicationPlan,
    };
    r.route(
        "/console/application_plans/{plan_id}",
        get(to_plan).layer(axum::middleware::from_fn_with_state(plans_clearance, guard)),
    )
}

/// Every account's applications as one list (the API's `/admin/api/applications.json`); rows
/// lead to the application's page under its account.
pub static ALL_APPLICATIONS: Mount = Mount {
    collection: "/admin/api/applications",
    id_param: "application_id",
    entity: &applications::APPLICATIONS,
    section: tollgate_domain::access::Section::Partners,
    service_column: Some("service_id"),
};

/// A field's label, as 3scale's screens name it.
pub fn label(name: &str) -> String {
    let known = [
        ("org_name", "Organization / group name"),
        ("friendly_name", "Name"),
        ("system_name", "System name"),
        ("cost_per_month", "Monthly fee"),
        ("setup_fee", "Setup fee"),
        ("trial_period_days", "Trial period (days)"),
        ("approval_required", "Applications require approval"),
        ("plan_id", "Plan"),
        ("metric_id", "Metric or method"),
        ("backend_id", "Backend"),
        ("http_method", "Verb"),
        ("user_key", "User key"),
        ("application_id", "Application ID"),
        ("application_key", "Application key"),
        ("cost_per_unit", "Cost per unit"),
        ("vat_code", "VAT code"),
        ("vat_rate", "VAT rate (%)"),
        ("private_endpoint", "Private base URL"),
        ("last", "Last (stop matching after this rule)"),
        ("email", "E-mail"),
        ("ids", "Selection"),
        ("service_id", "Product"),
        ("account_id", "Account"),
        ("body", "Message"),
    ];
    if let Some((_, l)) = known.iter().find(|(k, _)| *k == name) {
        return l.to_string();
    }
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// A record's name in a heading or a link.
pub fn title_of(r: &Record) -> String {
    ["name", "org_name", "friendly_name", "username", "pattern"]
        .iter()
        .find_map(|f| r.text(f).filter(|t| !t.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} #{}", r.resource.name.replace('_', " "), r.id()))
}

/// A cell as text.
pub fn shown(c: &Cell) -> String {
    match c {
        Cell::Int(Some(n)) => n.to_string(),
        Cell::Bool(Some(b)) => if *b { "yes" } else { "no" }.into(),
        Cell::Text(Some(t)) => t.clone(),
        Cell::Money(Some(d)) | Cell::Fee(Some(d)) => d.to_string(),
        Cell::Address(Some(a)) => serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .map(|o| {
                o.values()
                    .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        Cell::Json(Some(j)) => j.to_string(),
        _ => String::new(),
    }
}

/// Names keyed by (field, id): what the reference cells of a page are called.
type Names = HashMap<(&'static str, i64), String>;

/// The names of the reference cells (plan, product, account, metric, backend) of `records`.
async fn reference_names(
    app: &AppState,
    table: &str,
    records: &[&Record],
    fields: &[&'static str],
) -> Result<Names, Refused> {
    let mut out = Names::new();
    for &field in fields {
        let Some(target) = tollgate_store::catalog::names::target(table, field) else {
            continue;
        };
        let ids: Vec<i64> = records.iter().filter_map(|r| r.int(field)).collect();
        for (id, name) in tollgate_store::catalog::names::of(&app.db, target, &ids).await? {
            out.insert((field, id), name);
        }
    }
    Ok(out)
}

/// A cell as text, a reference by its name.
fn cell_text(field: &'static str, c: &Cell, names: &Names) -> String {
    match c {
        Cell::Int(Some(id)) => names.get(&(field, *id)).cloned().unwrap_or_else(|| shown(c)),
        Cell::Text(Some(t)) if field.ends_with("_at") => super::render::when(t),
        _ => shown(c),
    }
}

fn listed(f: &Field) -> bool {
    f.stored && !matches!(f.kind, Kind::Password | Kind::Address | Kind::Levels) && f.name != "description"
}

/// One control of a form: its label, its value as sent or stored, its choices, its errors.
pub struct Input {
    pub name: &'static str,
    pub label: String,
    /// `text`, `number`, `password`, `checkbox` or `select`.
    pub control: &'static str,
    pub value: String,
    pub options: Vec<(String, String)>,
    pub errors: String,
    pub required: bool,
}

/// The choices a reference field offers on this screen (`None`: a plain id).
async fn choices(
    app: &AppState,
    c: &Cleared,
    m: &Mount,
    field: &str,
    scope: &[i64],
) -> Result<Option<Vec<(String, String)>>, Refused> {
    let db = &app.db;
    let options = |rows: Vec<Record>| -> Vec<(String, String)> {
        rows.iter()
            .map(|r| {
                let system = r.text("system_name").map(|s| format!(" ({s})")).unwrap_or_default();
                (r.id().to_string(), format!("{}{system}", title_of(r)))
            })
            .collect()
    };
    Ok(match field {
        "plan_id" if is(m, &applications::APPLICATIONS) => {
            let services = service_ids(c);
            Some(options(plans::all_application_plans(db, services.as_deref()).await?))
        }
        "metric_id" if is(m, &mapping_rules::MAPPING_RULES) || is(m, &mapping_rules::BACKEND_MAPPING_RULES) => {
            let (metric_entity, method_entity) = match is(m, &mapping_rules::MAPPING_RULES) {
                true => (&metrics::METRICS, &metrics::METHODS),
                false => (&metrics::BACKEND_METRICS, &metrics::BACKEND_METHODS),
            };
            let found = store::list(db, metric_entity, scope, None, Page::FIRST).await?;
            let mut all = Vec::new();
            for metric in found {
                if metric
                    .text("system_name")
                    .is_some_and(|s| s == "hits" || s.starts_with("hits."))
                {
                    let methods =
                        store::list(db, method_entity, &[owner_of(scope)?, metric.id()], None, Page::FIRST).await?;
                    all.push(metric);
                    all.extend(methods);
                } else {
                    all.push(metric);
                }
            }
            Some(options(all))
        }
        "backend_id" => Some(options(
            store::list(db, &backends::BACKENDS, &[], None, Page::FIRST).await?,
        )),
        _ => None,
    })
}

fn creatable(f: &Field) -> bool {
    let filled_in = f.on_create == OnCreate::Derived && matches!(f.kind, Kind::Id | Kind::OneOf(_) | Kind::Count);
    !(filled_in || matches!(f.kind, Kind::Address | Kind::Levels))
}

fn updatable(f: &Field) -> bool {
    f.updatable && f.stored && !matches!(f.kind, Kind::Address | Kind::Levels)
}

/// What a form's controls are valued from.
#[derive(Clone, Copy)]
struct Values<'a> {
    /// The form as sent (after a refusal).
    sent: Option<&'a Form>,
    record: Option<&'a Record>,
    errors: &'a Errors,
}

/// The controls for `fields`, valued from the form as sent, else the record, else the default.
async fn inputs(
    app: &AppState,
    c: &Cleared,
    m: &Mount,
    fields: &[&'static Field],
    scope: &[i64],
    shown_as: Values<'_>,
) -> Result<Vec<Input>, Refused> {
    let Values { sent, record, errors } = shown_as;
    let mut out = Vec::new();
    for f in fields {
        let stored = record.and_then(|r| r.cell(f.name)).map(shown);
        let default = match f.on_create {
            OnCreate::Default(d) => Some(d.to_string()),
            _ => None,
        };
        let value = sent
            .and_then(|s| s.get(f.name))
            .map(str::to_string)
            .or(stored)
            .or(default)
            .unwrap_or_default();
        let (control, options) = match f.kind {
            Kind::Bool => ("checkbox", Vec::new()),
            Kind::Password => ("password", Vec::new()),
            Kind::Count | Kind::OptCount => ("number", Vec::new()),
            Kind::OneOf(words) => ("select", words.iter().map(|w| (w.to_string(), w.to_string())).collect()),
            Kind::Id => match choices(app, c, m, f.name, scope).await? {
                Some(o) => ("select", o),
                None => ("number", Vec::new()),
            },
            _ => ("text", Vec::new()),
        };
        let value = match (f.kind, value.as_str()) {
            (Kind::Bool, "yes" | "true" | "1") => "1".into(),
            (Kind::Bool, _) => "0".into(),
            (Kind::Password, _) => String::new(),
            _ => value,
        };
        out.push(Input {
            name: f.name,
            label: label(f.name),
            control,
            value,
            options,
            errors: errors.get(f.name).map(|e| e.join("; ")).unwrap_or_default(),
            required: f.on_create == OnCreate::Required,
        });
    }
    Ok(out)
}

/// Messages no field shows, as sentences: "Plan can't be blank. Selection …".
pub fn sentences<'e>(errors: impl Iterator<Item = (&'e String, &'e Vec<String>)>) -> String {
    errors
        .map(|(k, v)| match k.as_str() {
            "base" => v.join("; "),
            k => format!("{} {}", label(k), v.join("; ")),
        })
        .collect::<Vec<_>>()
        .join(". ")
}

/// What a form's page says at its top: the refusals of fields it does not show.
pub fn unshown(errors: &Errors, shown: &[&str]) -> String {
    sentences(errors.iter().filter(|(k, _)| !shown.contains(&k.as_str())))
}

/// A form's page status: 422 when it comes back refused.
pub fn status_for(errors: &Errors) -> StatusCode {
    match errors.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// A refusal as one text (a page without fields to put it next to, e.g. a bulk action's).
pub fn refusal_text(invalid: &tollgate_domain::Invalid) -> String {
    sentences(errors_of(invalid).iter())
}

pub fn errors_of(invalid: &tollgate_domain::Invalid) -> Errors {
    invalid
        .by_field()
        .into_iter()
        .map(|(field, messages)| (field.to_string(), messages.iter().map(|m| m.to_string()).collect()))
        .collect()
}

/// The page a screen lives under: the record page the path hangs off, if any.
fn back_of(m: &Mount, path: &PathMap) -> Option<String> {
    let base = base_of(m);
    let mut template = base.rsplit_once('/')?.0.to_string();
    loop {
        let is_page =
            MOUNTS.iter().any(|o| item_of(o) == template) || template == "/console/application_plans/{plan_id}";
        if is_page {
            return Some(fill(&template, path));
        }
        template = template.rsplit_once('/')?.0.to_string();
        if template == "/console" {
            return None;
        }
    }
}

fn section_of(m: &Mount) -> &'static str {
    match m.section {
        tollgate_domain::access::Section::Partners => "Audience",
        tollgate_domain::access::Section::Settings => "Settings",
        _ => "Products",
    }
}

fn frame<'a>(c: &'a Cleared, title: &'a str, m: &Mount) -> Frame<'a> {
    Frame {
        title,
        section: section_of(m),
        username: &c.staff.username,
        csrf: &c.staff.session.csrf_token,
    }
}

pub struct Column {
    pub label: String,
    /// The link that sorts by this column (the other way when it is the current order).
    pub sort_href: String,
    /// `Some(descending)` when the list is in this column's order.
    pub sorted: Option<bool>,
}

#[derive(Template)]
#[template(path = "console/resource_list.html")]
struct ListPage<'a> {
    frame: Frame<'a>,
    back: Option<String>,
    noun: String,
    columns: Vec<Column>,
    rows: Vec<(String, Vec<String>)>,
    search: String,
    base: String,
    sort: String,
    /// Records are created here (not in a list of every account's applications).
    can_create: bool,
    summary: String,
    prev: Option<String>,
    next: Option<String>,
    /// What a bulk action did or why it was refused.
    notice: Option<Notice>,
    bulk: Option<BulkBar>,
}

/// The outcome of a bulk action, above the list.
pub enum Notice {
    Done(String),
    Refused(String),
}

/// The bar under a list whose rows can be ticked (3scale Ch. 10).
pub struct BulkBar {
    pub action: &'static str,
    pub events: &'static [(&'static str, &'static str)],
    /// An application list's plan change: the plans to move to.
    pub plans: Vec<(String, String)>,
}

/// What each list's bulk bar offers: the form's `action` value and the button's label.
pub const ACCOUNT_ACTIONS: &[(&str, &str)] = &[
    ("approve", "Approve"),
    ("reject", "Reject"),
    ("suspend", "Suspend"),
    ("resume", "Resume"),
];
pub const APPLICATION_ACTIONS: &[(&str, &str)] =
    &[("approve", "Approve"), ("suspend", "Suspend"), ("resume", "Resume")];

/// The accounts' mount (Audience › Accounts).
pub fn accounts_mount() -> &'static Mount {
    MOUNTS.iter().find(|m| is(m, &accounts::ACCOUNTS)).unwrap_or(&MOUNTS[0])
}

/// The query of a list link (search, order, page).
fn list_query(search: &str, sort: &str, page: i64) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !search.is_empty() {
        q.append_pair("q", search);
    }
    if !sort.is_empty() {
        q.append_pair("sort", sort);
    }
    if page > 1 {
        q.append_pair("page", &page.to_string());
    }
    q.finish()
}

async fn list(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    match list_page(m, &app, &c, &path, None).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn list_page(
    m: &'static Mount,
    app: &AppState,
    c: &Cleared,
    path: &PathMap,
    notice: Option<Notice>,
) -> Result<Response, Refused> {
    let all_applications = std::ptr::eq(m, &ALL_APPLICATIONS);
    let scope = match all_applications {
        true => Vec::new(),
        false => crate::crud::scope(m, path)?,
    };
    let res = m.entity.resource;
    let search = c.form.text("q").unwrap_or("").to_string();
    let sort = c.form.text("sort").unwrap_or("").to_string();
    let order = sort.strip_prefix('-').unwrap_or(&sort);
    // Rules are matched in position order: that is their list's order unless another is asked.
    let order = res
        .sortable(order)
        .map(|column| Order {
            column,
            descending: sort.starts_with('-'),
        })
        .or_else(|| {
            res.sortable("position").map(|column| Order {
                column,
                descending: false,
            })
        });
    let page: i64 = c
        .form
        .parse("page")
        .ok()
        .flatten()
        .filter(|p: &i64| *p >= 1)
        .unwrap_or(1);
    // Accounts are also found by their users' names and e-mails (3scale's account search).
    let by_users = match (is(m, &accounts::ACCOUNTS), search.is_empty()) {
        (true, false) => accounts::with_user_matching(&app.db, &search).await?,
        _ => Vec::new(),
    };
    let listing = Listing {
        search: Some(&search).filter(|s| !s.is_empty()).map(String::as_str),
        order,
        or_ids: &by_users,
    };
    let only_ids = m.service_column.and_then(|_| service_ids(c));
    let only = m.service_column.zip(only_ids.as_deref());
    let paging = Page {
        page,
        per_page: PER_PAGE,
    };
    let items = store::list_listed(&app.db, m.entity, &scope, only, &listing, paging).await?;
    let total = store::count_listed(&app.db, m.entity, &scope, only, &listing).await?;
    let base = fill(&base_of(m), path);
    let item = match all_applications {
        true => item_of(application_mount()),
        false => item_of(m),
    };
    let shown_fields: Vec<&Field> = res.fields.iter().filter(|f| listed(f)).take(6).collect();
    let mut columns = vec![("id", "ID".to_string())];
    columns.extend(shown_fields.iter().map(|f| (f.name, label(f.name))));
    let columns = columns
        .into_iter()
        .map(|(name, label)| {
            let sorted = order.filter(|o| o.column == name).map(|o| o.descending);
            let next = match sorted {
                Some(false) => format!("-{name}"),
                _ => name.to_string(),
            };
            Column {
                label,
                sort_href: format!("{base}?{}", list_query(&search, &next, 1)),
                sorted,
            }
        })
        .collect();
    let names = {
        let refs: Vec<&Record> = items.iter().collect();
        let fields: Vec<&'static str> = shown_fields.iter().map(|f| f.name).collect();
        reference_names(app, res.table, &refs, &fields).await?
    };
    let rows = items
        .iter()
        .map(|r| {
            let mut p = path.clone();
            p.insert(m.id_param.to_string(), r.id().to_string());
            for column in res.scope {
                p.entry(column.to_string())
                    .or_insert_with(|| r.int(column).unwrap_or_default().to_string());
            }
            let mut cells = vec![r.id().to_string()];
            cells.extend(
                shown_fields
                    .iter()
                    .map(|f| r.cell(f.name).map(|c| cell_text(f.name, c, &names)).unwrap_or_default()),
            );
            (fill(&item, &p), cells)
        })
        .collect();
    let first = (page - 1) * PER_PAGE;
    let summary = match total {
        0 => String::new(),
        _ => format!("{}–{} of {total}", first + 1, (first + PER_PAGE).min(total)),
    };
    let prev = (page > 1).then(|| format!("{base}?{}", list_query(&search, &sort, page - 1)));
    let next = (first + PER_PAGE < total).then(|| format!("{base}?{}", list_query(&search, &sort, page + 1)));
    let title = label(res.collection);
    let bulk = match (all_applications, is(m, &accounts::ACCOUNTS)) {
        (true, _) => {
            let services = service_ids(c);
            let plans = plans::all_application_plans(&app.db, services.as_deref()).await?;
            let names: HashMap<i64, String> = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST)
                .await?
                .iter()
                .map(|s| (s.id(), title_of(s)))
                .collect();
            Some(BulkBar {
                action: "/console/applications/bulk",
                events: APPLICATION_ACTIONS,
                plans: plans
                    .iter()
                    .map(|p| {
                        let service = names.get(&p.int("service_id").unwrap_or_default());
                        let service = service.map(String::as_str).unwrap_or("?");
                        (p.id().to_string(), format!("{service} › {}", title_of(p)))
                    })
                    .collect(),
            })
        }
        (false, true) => Some(BulkBar {
            action: "/console/accounts/bulk",
            events: ACCOUNT_ACTIONS,
            plans: Vec::new(),
        }),
        _ => None,
    };
    let refused = matches!(notice, Some(Notice::Refused(_)));
    let status = if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        html(ListPage {
            frame: frame(c, &title, m),
            back: back_of(m, path),
            noun: res.name.replace('_', " "),
            columns,
            rows,
            search,
            base,
            sort,
            can_create: !all_applications,
            summary,
            prev,
            next,
            notice,
            bulk,
        }),
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "console/resource_form.html")]
struct FormPage<'a> {
    frame: Frame<'a>,
    back: String,
    action: String,
    inputs: Vec<Input>,
    base_error: String,
    button: String,
}

/// The fields a new record's form asks for (a new account: its admin user's too, as signup).
fn create_fields(m: &Mount) -> Vec<&'static Field> {
    let mut fields: Vec<&'static Field> = m.entity.resource.fields.iter().filter(|f| creatable(f)).collect();
    if is(m, &accounts::ACCOUNTS) {
        fields.retain(|f| f.name != "plan_id");
        fields.extend(accounts::USER.fields.iter().filter(|f| creatable(f)));
    }
    fields
}

async fn form_page(
    m: &'static Mount,
    app: &AppState,
    c: &Cleared,
    path: &PathMap,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, Refused> {
    let scope = crate::crud::scope(m, path)?;
    let res = m.entity.resource;
    let fields = create_fields(m);
    let inputs = inputs(
        app,
        c,
        m,
        &fields,
        &scope,
        Values {
            sent,
            record: None,
            errors: &errors,
        },
    )
    .await?;
    let title = format!("New {}", res.name.replace('_', " "));
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let base = fill(&base_of(m), path);
    let base_error = errors.get("base").map(|e| e.join("; ")).unwrap_or_default();
    Ok((
        status,
        html(FormPage {
            frame: frame(c, &title, m),
            back: base.clone(),
            action: base,
            inputs,
            base_error,
            button: format!("Create {}", res.name.replace('_', " ")),
        }),
    )
        .into_response())
}

async fn new_form(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    form_page(m, &app, &c, &path, None, Errors::new())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The form without the blank fields `blank` names: a field left empty on a screen is a
/// field not given (a derived system name, a default, an unchanged password).
fn without_blanks(form: &Form, blank: impl Fn(&str) -> bool) -> Form {
    Form(
        form.0
            .iter()
            .filter(|(k, v)| !(v.trim().is_empty() && blank(k)))
            .cloned()
            .collect(),
    )
}

async fn create(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let made = async {
        let scope = crate::crud::scope(m, &path)?;
        let form = without_blanks(&c.form, |_| true);
        if is(m, &accounts::ACCOUNTS) {
            let signup = accounts::Signup::from_form(&form).map_err(tollgate_store::StoreError::Invalid)?;
            return Ok(accounts::signup(&app.db, signup).await?);
        }
        let values = m
            .entity
            .resource
            .values_for_create(&form)
            .map_err(tollgate_store::StoreError::Invalid)?;
        Ok::<_, crate::error::ApiError>(store::create(&app.db, m.entity, &scope, values).await?)
    }
    .await;
    match made {
        Ok(record) => {
            let mut p = path.clone();
            p.insert(m.id_param.to_string(), record.id().to_string());
            Redirect::to(&fill(&item_of(m), &p)).into_response()
        }
        Err(crate::error::ApiError::Invalid(invalid)) => {
            form_page(m, &app, &c, &path, Some(&c.form), errors_of(&invalid))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

pub struct EventButton {
    pub action: String,
    pub label: String,
    /// What the button sends besides the CSRF token.
    pub hidden: Vec<(&'static str, &'static str)>,
    /// The plans to choose from (a plan change).
    pub plans: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/resource_item.html")]
struct ItemPage<'a> {
    frame: Frame<'a>,
    back: String,
    facts: Vec<(String, String)>,
    action: String,
    inputs: Vec<Input>,
    base_error: String,
    events: Vec<EventButton>,
    children: Vec<(String, String)>,
    delete_href: String,
    /// An application's keys, with the address that adds and deletes them.
    keys: Option<(Vec<String>, String)>,
    /// A member's sections and services.
    permissions: Option<super::users::PermissionsForm>,
    /// An account's billing address form: where it posts, its controls.
    address: Option<(String, Vec<Input>)>,
    /// An account's "Invite a user" form: where it posts.
    invite: Option<String>,
}

/// The events a record can take now, as buttons.
async fn event_buttons(app: &AppState, m: &Mount, record: &Record, item: &str) -> Result<Vec<EventButton>, Refused> {
    let res = m.entity.resource;
    let state = record.text("state").unwrap_or_default();
    let mut out: Vec<EventButton> = res
        .transitions
        .iter()
        .filter(|t| t.from.is_empty() || t.from.contains(&state))
        .map(|t| EventButton {
            action: format!("{item}/events/{}", t.event),
            label: label(t.event),
            hidden: Vec::new(),
            plans: Vec::new(),
        })
        .collect();
    // A state moved by an update (a plan's publish | hide): a button per state it is not in.
    if let Some(Kind::OneOf(moves)) = res.field("state_event").map(|f| f.kind) {
        for &to in moves {
            let reached = match to {
                "publish" => "published",
                "hide" => "hidden",
                other => other,
            };
            if state != reached {
                out.push(EventButton {
                    action: item.to_string(),
                    label: label(to),
                    hidden: vec![("state_event", to)],
                    plans: Vec::new(),
                });
            }
        }
    }
    if is(m, &applications::APPLICATIONS) && record.text("user_key").is_some_and(|k| !k.is_empty()) {
        out.push(EventButton {
            action: format!("{item}/user_key"),
            label: "Regenerate user key".into(),
            hidden: Vec::new(),
            plans: Vec::new(),
        });
    }
    if is(m, &plans::APPLICATION_PLANS) {
        out.push(EventButton {
            action: format!("{item}/copy"),
            label: "Copy (with its limits and pricing rules)".into(),
            hidden: Vec::new(),
            plans: Vec::new(),
        });
    }
    for e in m.entity.behaviour.events() {
        let (plans, current) = match *e {
            "change_plan" if is(m, &applications::APPLICATIONS) => {
                let service = record.int("service_id").unwrap_or_default();
                let current = store::find(
                    &app.db,
                    &plans::APPLICATION_PLANS,
                    &[service],
                    record.int("plan_id").unwrap_or_default(),
                )
                .await
                .ok();
                let all = store::list(&app.db, &plans::APPLICATION_PLANS, &[service], None, Page::FIRST).await?;
                (all, current)
            }
            "change_plan" => (
                store::list(&app.db, &plans::ACCOUNT_PLANS, &[], None, Page::FIRST).await?,
                None,
            ),
            _ => (Vec::new(), None),
        };
        let today = chrono::Utc::now().date_naive();
        let option = |p: &Record| match &current {
            Some(old) => format!("{} — {}", title_of(p), proration_note(old, p, today)),
            None => title_of(p),
        };
        let custom = record.flag("custom").unwrap_or(false) || record.extra.iter().any(|(n, _)| *n == "custom_plan");
        let offered = match *e {
            "customize_plan" => !custom,
            "decustomize_plan" => custom,
            "default" => true,
            _ => true,
        };
        if offered {
            out.push(EventButton {
                action: format!("{item}/events/{e}"),
                label: match *e {
                    "default" => "Make default".into(),
                    _ => label(e),
                },
                hidden: Vec::new(),
                plans: plans
                    .iter()
                    .filter(|p| p.id() != record.int("plan_id").unwrap_or_default())
                    .map(|p| (p.id().to_string(), option(p)))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// What moving an application from plan `old` to `new` on `today` adds to this month's
/// invoice when billing is on (the lines [`tollgate_domain::proration::change`] makes).
fn proration_note(old: &Record, new: &Record, today: chrono::NaiveDate) -> String {
    let fee = |p: &Record| p.money("cost_per_month").unwrap_or_default();
    let (from, to) = (fee(old), fee(new));
    let lines = tollgate_domain::proration::change(from, to, today);
    if lines.is_empty() {
        return format!(
            "{}/month; not an upgrade: nothing refunded or charged this month",
            to.normalize()
        );
    }
    let parts: Vec<String> = lines
        .iter()
        .map(|l| match l {
            tollgate_domain::proration::Line::Refund(a) => format!("refunds {}", (-*a).normalize()),
            tollgate_domain::proration::Line::Upgrade(a) => format!("charges {}", a.normalize()),
        })
        .collect();
    format!(
        "{}/month; today {} for the rest of the month",
        to.normalize(),
        parts.join(" and ")
    )
}

async fn item_page(
    m: &'static Mount,
    app: &AppState,
    c: &Cleared,
    path: &PathMap,
    sent: Option<&Form>,
    errors: Errors,
) -> Result<Response, Refused> {
    let scope = crate::crud::scope(m, path)?;
    let id = crate::crud::id(m, path)?;
    let record = store::find(&app.db, m.entity, &scope, id).await?;
    let res = m.entity.resource;
    let fields: Vec<&'static Field> = res.fields.iter().filter(|f| updatable(f)).collect();
    let inputs = inputs(
        app,
        c,
        m,
        &fields,
        &scope,
        Values {
            sent,
            record: Some(&record),
            errors: &errors,
        },
    )
    .await?;
    let cell_names: Vec<&'static str> = record.cells.iter().map(|(n, _)| *n).collect();
    let names = reference_names(app, res.table, &[&record], &cell_names).await?;
    let mut facts: Vec<(String, String)> = record
        .cells
        .iter()
        .filter(|(n, _)| !fields.iter().any(|f| f.name == *n))
        .map(|(n, cell)| (label(n), cell_text(n, cell, &names)))
        .collect();
    for (n, extra) in &record.extra {
        if let tollgate_store::catalog::resource::Extra::Text(t) = extra {
            facts.push((label(n), t.clone()));
        }
    }
    let item = fill(&item_of(m), path);
    let events = event_buttons(app, m, &record, &item).await?;
    // What hangs off this record: the mounts under its path, and a plan's limits and pricing.
    let mut children: Vec<(String, String)> = MOUNTS
        .iter()
        .filter(|o| {
            o.collection
                .starts_with(&format!("{}/{{{}}}/", m.collection, m.id_param))
        })
        .filter(|o| o.entity.parent.params().len() == m.entity.parent.params().len() + 1)
        .map(|o| (fill(&base_of(o), path), label(o.entity.resource.collection)))
        .collect();
    if is(m, &services::SERVICES) {
        children.insert(
            0,
            (
                format!("{item}/integration"),
                "Integration: settings, deploy and promote, test the mapping rules".into(),
            ),
        );
    }
    if is(m, &applications::APPLICATIONS) {
        children.push((
            format!("/console/analytics/usage?application_id={id}"),
            "Analytics: its usage and responses".into(),
        ));
    }
    if is(m, &backends::BACKENDS) {
        children.push((
            format!("/console/analytics/usage?backend_api_id={id}"),
            "Analytics: its usage over the products using it".into(),
        ));
    }
    if is(m, &metrics::METRICS) && record.text("system_name") != Some("hits") {
        children.retain(|(_, l)| l != "Methods");
    }
    if is(m, &plans::APPLICATION_PLANS) {
        let service = owner_of(&scope)?;
        let all = store::list(&app.db, &metrics::METRICS, &[service], None, Page::FIRST).await?;
        let mut with_methods = Vec::new();
        for metric in all {
            let methods = match metric.text("system_name") {
                Some("hits") => {
                    store::list(&app.db, &metrics::METHODS, &[service, metric.id()], None, Page::FIRST).await?
                }
                _ => Vec::new(),
            };
            with_methods.push(metric);
            with_methods.extend(methods);
        }
        for metric in with_methods {
            let at = format!("/console/application_plans/{id}/metrics/{}", metric.id());
            children.push((format!("{at}/limits"), format!("Limits of {}", title_of(&metric))));
            children.push((
                format!("{at}/pricing_rules"),
                format!("Pricing rules of {}", title_of(&metric)),
            ));
        }
    }
    let keys = match is(m, &applications::APPLICATIONS) {
        true => {
            let account = AccountId::new(owner_of(&scope)?);
            let found = applications::account_keys(&app.db, account, ApplicationId::new(id)).await?;
            Some((found, format!("{item}/keys")))
        }
        false => None,
    };
    let permissions = match is(m, &provider::PROVIDER_USERS) {
        true => {
            let refused = errors.get("permissions").map(|e| e.join("; ")).unwrap_or_default();
            super::users::permissions_form(app, id, refused).await?
        }
        false => None,
    };
    if is(m, &accounts::ACCOUNTS) {
        // Billing's view of the account: its card (last 4, expiry — never the number), its
        // invoices and its credits.
        let card = match tollgate_store::billing::payments::card_status(&app.db, AccountId::new(id)).await? {
            Some(c) => super::render::card_text(&c),
            None => "No card stored".into(),
        };
        facts.push(("Credit card".into(), card));
        children.push((format!("/console/finance/invoices?account_id={id}"), "Invoices".into()));
        children.push((format!("/console/finance/credit_accounts/{id}"), "Credits".into()));
    }
    let address = match is(m, &accounts::ACCOUNTS) {
        true => Some((
            format!("{item}/billing_address"),
            address_inputs(&record, sent, &errors),
        )),
        false => None,
    };
    let title = format!("{} “{}”", label(res.name), title_of(&record));
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let base_error = sentences(errors.iter().filter(|(k, _)| {
        !fields.iter().any(|f| f.name == k.as_str()) && k.as_str() != "permissions" && !k.starts_with("address.")
    }));
    Ok((
        status,
        html(ItemPage {
            frame: frame(c, &title, m),
            back: back_of(m, path).unwrap_or_else(|| fill(&base_of(m), path)),
            facts,
            action: item.clone(),
            inputs,
            base_error,
            events,
            children,
            delete_href: format!("{item}/delete"),
            keys,
            permissions,
            invite: address.as_ref().map(|_| format!("{item}/invitations")),
            address,
        }),
    )
        .into_response())
}

/// The billing address controls of an account's page: as sent after a refusal (errors keyed
/// `address.<part>`), else as stored.
pub fn address_inputs(record: &Record, sent: Option<&Form>, errors: &Errors) -> Vec<Input> {
    let stored = match record.cell("billing_address") {
        Some(Cell::Address(Some(a))) => serde_json::to_value(a).unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    tollgate_domain::catalog::ADDRESS_FIELDS
        .iter()
        .map(|&part| Input {
            name: part,
            label: match part {
                "address1" => "Address".into(),
                "address2" => "Address (line 2)".into(),
                "zip" => "ZIP / postal code".into(),
                "state" => "State / region".into(),
                other => label(other),
            },
            control: "text",
            value: sent
                .and_then(|f| f.get(part))
                .map(str::to_string)
                .or_else(|| stored.get(part).and_then(|v| v.as_str()).map(str::to_string))
                .unwrap_or_default(),
            options: Vec::new(),
            errors: errors
                .get(&format!("address.{part}"))
                .map(|e| e.join("; "))
                .unwrap_or_default(),
            required: matches!(part, "name" | "address1" | "city" | "country"),
        })
        .collect()
}

/// Sets a member's sections and services to exactly what was ticked.
async fn update_permissions(State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let raw = path.get("user_id").cloned().unwrap_or_default();
    let done = async {
        let user: tollgate_domain::ids::ProviderUserId = crate::error::path_id(&raw)?;
        // Nothing ticked is an empty list, not "unchanged": the form always sends both.
        let mut form = c.form.clone();
        form.0.push(("allowed_sections[]".into(), "[]".into()));
        form.0.push(("allowed_service_ids[]".into(), "[]".into()));
        provider::update_permissions(
            &app.db,
            user,
            <provider::PermissionsPatch as tollgate_domain::form::FromForm>::from_form(&form)?,
        )
        .await?;
        Ok::<_, crate::error::ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&format!("/console/users/{raw}")).into_response(),
        Err(crate::error::ApiError::Invalid(invalid)) => user_page_with(&app, &c, &path, refusal_text(&invalid))
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => Refused::from(e).into_response(),
    }
}

/// A provider user's page with a refused permissions change next to the form.
pub async fn user_page_with(app: &AppState, c: &Cleared, path: &PathMap, refused: String) -> Result<Response, Refused> {
    let m = MOUNTS
        .iter()
        .find(|m| is(m, &provider::PROVIDER_USERS))
        .unwrap_or(&MOUNTS[0]);
    item_page(
        m,
        app,
        c,
        path,
        None,
        Errors::from([("permissions".to_string(), vec![refused])]),
    )
    .await
}

async fn show(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    item_page(m, &app, &c, &path, None, Errors::new())
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// After a refused change: the page again, with what was refused next to its field.
async fn refused_on_item(
    m: &'static Mount,
    app: &AppState,
    c: &Cleared,
    path: &PathMap,
    e: crate::error::ApiError,
    sent: Option<&Form>,
) -> Response {
    match e {
        crate::error::ApiError::Invalid(invalid) => item_page(m, app, c, path, sent, errors_of(&invalid))
            .await
            .unwrap_or_else(IntoResponse::into_response),
        e => Refused::from(e).into_response(),
    }
}

async fn update(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let done = async {
        let scope = crate::crud::scope(m, &path)?;
        let id = crate::crud::id(m, &path)?;
        let values = m
            .entity
            .resource
            .values_for_update(&without_blanks(&c.form, |k| k == "password"))
            .map_err(tollgate_store::StoreError::Invalid)?;
        Ok::<_, crate::error::ApiError>(store::update(&app.db, m.entity, &scope, id, values).await?)
    }
    .await;
    match done {
        Ok(_) => Redirect::to(&fill(&item_of(m), &path)).into_response(),
        Err(e) => refused_on_item(m, &app, &c, &path, e, Some(&c.form)).await,
    }
}

async fn event(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let done = async {
        let scope = crate::crud::scope(m, &path)?;
        let id = crate::crud::id(m, &path)?;
        let name = path.get("event").map(String::as_str).unwrap_or_default();
        if !m.entity.events().contains(&name) {
            return Err(crate::error::ApiError::NotFound);
        }
        let input = EventInput::from_form(name, &c.form)?;
        Ok(store::event(&app.db, m.entity, &scope, id, &input).await?)
    }
    .await;
    match done {
        Ok(_) => Redirect::to(&fill(&item_of(m), &path)).into_response(),
        Err(e) => refused_on_item(m, &app, &c, &path, e, None).await,
    }
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage<'a> {
    pub frame: Frame<'a>,
    pub what: String,
    pub consequence: String,
    pub action: String,
    pub back: String,
}

/// What deleting takes with it, as the guide warns (Ch. 18: a product with its plans and
/// applications).
fn consequence_of(m: &Mount) -> &'static str {
    match m.entity.resource.name {
        "service" => "Its metrics, methods, mapping rules, application plans and every application on them go with it.",
        "account" => "Its users, applications and subscriptions go with it.",
        "application_plan" => "A plan with applications on it cannot be deleted: move them to another plan first.",
        "metric" => "Its methods, the limits and pricing rules on it and the mapping rules that count it go with it.",
        "application" => "Its keys stop working at once.",
        "service_subscription" => {
            "The account is unsubscribed from the product (3scale Ch. 15); it can subscribe again."
        }
        _ => "This cannot be undone.",
    }
}

async fn confirm_delete(
    m: &'static Mount,
    State(app): State<AppState>,
    c: Cleared,
    Path(path): Path<PathMap>,
) -> Response {
    let shown = async {
        let scope = crate::crud::scope(m, &path)?;
        let id = crate::crud::id(m, &path)?;
        let record = store::find(&app.db, m.entity, &scope, id).await?;
        let what = format!("{} “{}”", label(m.entity.resource.name), title_of(&record));
        let title = format!("Delete {what}?");
        let item = fill(&item_of(m), &path);
        Ok::<_, crate::error::ApiError>(html(ConfirmPage {
            frame: frame(&c, &title, m),
            what,
            consequence: consequence_of(m).into(),
            action: format!("{item}/delete"),
            back: item,
        }))
    }
    .await;
    shown.unwrap_or_else(|e| Refused::from(e).into_response())
}

async fn delete(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let done = async {
        let scope = crate::crud::scope(m, &path)?;
        let id = crate::crud::id(m, &path)?;
        Ok::<_, crate::error::ApiError>(store::delete(&app.db, m.entity, &scope, id).await?)
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&fill(&base_of(m), &path)).into_response(),
        Err(e) => refused_on_item(m, &app, &c, &path, e, None).await,
    }
}

fn application_mount() -> &'static Mount {
    MOUNTS
        .iter()
        .find(|m| is(m, &applications::APPLICATIONS))
        .unwrap_or(&MOUNTS[0])
}

async fn add_key(State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    key_change(&app, &c, &path, true).await
}

async fn delete_key(State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    key_change(&app, &c, &path, false).await
}

/// A new random user key (3scale Ch. 9 "Regenerate"): the old one stops working at once.
async fn regenerate_user_key(State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let m = application_mount();
    let done = async {
        let scope = crate::crud::scope(m, &path)?;
        let id = crate::crud::id(m, &path)?;
        let key = tollgate_store::auth::generate_token();
        let values = m
            .entity
            .resource
            .values_for_update(&Form::of(&[("user_key", &key)]))
            .map_err(tollgate_store::StoreError::Invalid)?;
        store::update(&app.db, m.entity, &scope, id, values).await?;
        Ok::<_, crate::error::ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&fill(&item_of(m), &path)).into_response(),
        Err(e) => refused_on_item(m, &app, &c, &path, e, None).await,
    }
}

/// An account's billing address (invoices print it), set as the API's
/// `PUT /accounts/{id}/billing_address.json` sets it; refusals next to their fields.
async fn set_billing_address(State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let m = accounts_mount();
    let done = async {
        let id = AccountId::new(crate::crud::id(m, &path)?);
        let address = <tollgate_domain::invoice::Address as tollgate_domain::form::FromForm>::from_form(&c.form)?;
        accounts::set_billing_address(&app.db, id, &address).await?;
        Ok::<_, crate::error::ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&fill(&item_of(m), &path)).into_response(),
        Err(crate::error::ApiError::Invalid(invalid)) => {
            let errors = errors_of(&invalid)
                .into_iter()
                .map(|(k, v)| (format!("address.{k}"), v))
                .collect();
            item_page(m, &app, &c, &path, Some(&c.form), errors)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => Refused::from(e).into_response(),
    }
}

/// Adds a key (the one given, or a generated one) or deletes one: the API's functions.
async fn key_change(app: &AppState, c: &Cleared, path: &PathMap, add: bool) -> Response {
    let m = application_mount();
    let done = async {
        let scope = crate::crud::scope(m, path)?;
        let id = ApplicationId::new(crate::crud::id(m, path)?);
        let account = AccountId::new(owner_of(&scope)?);
        let key = c.form.text("key").map(str::to_string);
        if add {
            let key = key.unwrap_or_else(|| tollgate_store::auth::generate_token()[..32].to_string());
            applications::create_key(&app.db, account, id, &key).await?;
        } else {
            let key = key.ok_or_else(|| crate::error::ApiError::invalid("key", "can't be blank"))?;
            applications::delete_key(&app.db, account, id, &key).await?;
        }
        Ok::<_, crate::error::ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&fill(&item_of(m), path)).into_response(),
        Err(e) => refused_on_item(m, app, c, path, e, None).await,
    }
}

/// Copies an application plan with its limits and pricing rules (the API's copy) and opens
/// the copy (in the original's state).
async fn copy_plan(m: &'static Mount, State(app): State<AppState>, c: Cleared, Path(path): Path<PathMap>) -> Response {
    let done = async {
        let id = tollgate_domain::ids::PlanId::new(crate::crud::id(m, &path)?);
        Ok::<_, crate::error::ApiError>(plans::copy_plan(&app.db, id, None, None).await?)
    }
    .await;
    match done {
        Ok(copied) => {
            let mut p = path.clone();
            p.insert(m.id_param.to_string(), copied.id().to_string());
            Redirect::to(&fill(&item_of(m), &p)).into_response()
        }
        Err(e) => refused_on_item(m, &app, &c, &path, e, None).await,
    }
}

/// `/console/application_plans/{plan_id}`: to the plan's page under its service.
async fn to_plan(State(app): State<AppState>, Path(plan_id): Path<String>) -> Response {
    let found = async {
        let plan: tollgate_domain::ids::PlanId = crate::error::path_id(&plan_id)?;
        let mut conn = app.db.pool.acquire().await.map_err(tollgate_store::StoreError::from)?;
        let service = tollgate_store::catalog::services::of_plan(&mut conn, plan)
            .await?
            .ok_or(crate::error::ApiError::NotFound)?;
        Ok::<_, crate::error::ApiError>(format!(
            "/console/services/{}/application_plans/{}",
            service.get(),
            plan.get()
        ))
    }
    .await;
    match found {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => Refused::from(e).into_response(),
    }
}
