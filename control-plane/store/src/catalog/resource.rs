//! One implementation of 3scale-style CRUD for every catalog table.
//!
//! A [`Resource`] declares its table, the columns fixed by the URL (its scope, e.g. the
//! service id), and its fields with their kinds. From that the engine validates a form (every
//! bad field reported at once), writes rows and reads them back as [`Record`]s: typed cells
//! that the HTTP layer renders in 3scale's shapes (one serializer per format, whatever the
//! resource). What a resource does beyond storing fields — a service's built-in `hits`, tiers
//! that must not overlap — is its [`Behaviour`], an impl next to the resource's declaration
//! (see [`super::crud`] for how a write runs them, in one transaction).

use crate::error::{is_unique_violation, Result, StoreError};
use crate::time::now;
use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::{AnyConnection, Row};
use tollgate_domain::catalog::check_system_name;
use tollgate_domain::form::{Form, Page};
use tollgate_domain::ids::PlanId;
use tollgate_domain::invoice::Address;
use tollgate_domain::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A system name: `[A-Za-z0-9_\-/]`.
    SystemName,
    /// A non-negative integer.
    Count,
    /// A non-negative integer or empty (NULL), e.g. a pricing tier's open end.
    OptCount,
    /// A reference to another row's id (checked by the owning module).
    Id,
    /// `true`/`false`, stored as 0/1.
    Bool,
    /// Money: a non-negative decimal with at most 4 places, stored as text, shown as a
    /// decimal string (`"20.0"`, as 3scale shows pricing rules).
    Money,
    /// The same money, shown as a JSON number (as 3scale shows plan fees).
    Fee,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
    /// A postal address, stored as a JSON document (written by its own call, never by a form).
    Address,
    /// A service's usage-limit alert levels (3scale's `notification_settings`), given as
    /// `name[web_provider][]=50&…`, stored and shown as a JSON object of lists.
    Levels,
    /// An `http(s)` URL a gateway sends traffic to, or empty (none yet); checked as
    /// [`tollgate_domain::gateway::Endpoint`] parses it, so gateways never refuse it.
    Url,
    /// A backend usage's path, kept as 3scale normalizes it (`v2/` → `/v2`).
    UsagePath,
    /// A password: checked ([`tollgate_domain::sign_in::check_password`]), stored as its
    /// argon2id hash ([`crate::passwords`]), never shown.
    Password,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCreate {
    Required,
    Default(&'static str),
    /// NULL when not given.
    Optional,
    /// Filled in by the behaviour (e.g. a system name derived from the name), or left out.
    Derived,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// Another parameter name accepted for this field (3scale's APIs are not always consistent).
    pub alias: &'static str,
    pub kind: Kind,
    pub on_create: OnCreate,
    pub updatable: bool,
    /// A column of the table; `false`: an input only the behaviour reads (e.g. `state_event`).
    pub stored: bool,
}

pub const fn field(name: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        name,
        alias: "",
        kind,
        on_create,
        updatable: true,
        stored: true,
    }
}

pub const fn aliased(name: &'static str, alias: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        alias,
        ..field(name, kind, on_create)
    }
}

pub const fn fixed(name: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        updatable: false,
        ..field(name, kind, on_create)
    }
}

/// A parameter the behaviour reads that is not a column: parsed and validated with the rest,
/// taken only when given.
pub const fn input(name: &'static str, kind: Kind) -> Field {
    Field {
        stored: false,
        ..field(name, kind, OnCreate::Derived)
    }
}

#[derive(Debug)]
pub struct Resource {
    /// The entity's name in JSON (`"service"`).
    pub name: &'static str,
    /// The list's name in JSON (`"services"`).
    pub collection: &'static str,
    pub table: &'static str,
    /// Columns the URL fixes, in the order the scope values come.
    pub scope: &'static [&'static str],
    pub fields: &'static [Field],
    /// The field a unique-constraint violation is reported on.
    pub unique_field: &'static str,
    /// Events that move a column between values (`PUT …/{id}/{event}.json`).
    pub transitions: &'static [Transition],
}

/// A state-machine event: `event` sets `column` to `to` when it is one of `from` (any if empty).
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub event: &'static str,
    pub column: &'static str,
    pub from: &'static [&'static str],
    pub to: &'static str,
}

pub const fn event(event: &'static str, from: &'static [&'static str], to: &'static str) -> Transition {
    Transition {
        event,
        column: "state",
        from,
        to,
    }
}

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(String),
    Int(i64),
    /// NULL for an integer column (PostgreSQL types the parameter).
    NullInt,
    /// NULL for a text column.
    NullText,
}

impl Kind {
    fn null(self) -> Val {
        match self {
            Kind::Count | Kind::OptCount | Kind::Id | Kind::Bool => Val::NullInt,
            _ => Val::NullText,
        }
    }
}

pub type Values = Vec<(&'static str, Val)>;

/// Sets a derived value unless the client gave one.
pub fn derive(values: &mut Values, name: &'static str, value: impl FnOnce() -> String) {
    if !values.iter().any(|(n, _)| *n == name) {
        values.push((name, Val::Text(value())));
    }
}

pub fn text<'v>(values: &'v Values, name: &str) -> Option<&'v str> {
    values.iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
        Val::Text(s) => Some(s.as_str()),
        _ => None,
    })
}

pub fn int(values: &Values, name: &str) -> Option<i64> {
    values.iter().find(|(n, _)| *n == name).and_then(|(_, v)| match v {
        Val::Int(i) => Some(*i),
        _ => None,
    })
}

/// Sets (or replaces) a value.
pub fn set(values: &mut Values, name: &'static str, value: Val) {
    match values.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => *v = value,
        None => values.push((name, value)),
    }
}

fn parse_field(f: &Field, raw: &str) -> Result<Val, String> {
    let raw_t = raw.trim();
    Ok(match f.kind {
        Kind::Text | Kind::Address | Kind::Levels => Val::Text(raw.to_string()),
        Kind::SystemName => {
            check_system_name(raw_t)?;
            Val::Text(raw_t.to_string())
        }
        Kind::Count | Kind::Id => match raw_t.parse::<i64>() {
            Ok(n) if n >= 0 => Val::Int(n),
            Ok(_) => return Err("must be greater than or equal to 0".into()),
            Err(_) => return Err("is not a number".into()),
        },
        Kind::OptCount => match raw_t {
            "" | "null" => Val::NullInt,
            _ => match raw_t.parse::<i64>() {
                Ok(n) if n >= 0 => Val::Int(n),
                Ok(_) => return Err("must be greater than or equal to 0".into()),
                Err(_) => return Err("is not a number".into()),
            },
        },
        Kind::Bool => match raw_t {
            "true" | "1" => Val::Int(1),
            "false" | "0" => Val::Int(0),
            _ => return Err("must be true or false".into()),
        },
        Kind::Money | Kind::Fee => {
            let d: Decimal = raw_t.parse().map_err(|_| "is not a number".to_string())?;
            if d.is_sign_negative() && !d.is_zero() {
                return Err("must be greater than or equal to 0".into());
            }
            if d.normalize().scale() > 4 {
                return Err("must have at most 4 decimal places".into());
            }
            Val::Text(d.normalize().to_string())
        }
        Kind::Url => {
            if !raw_t.is_empty() {
                tollgate_domain::gateway::Endpoint::parse(raw_t)?;
            }
            Val::Text(raw_t.to_string())
        }
        Kind::UsagePath => Val::Text(tollgate_domain::gateway::usage_path(raw_t)?),
        Kind::Password => {
            tollgate_domain::sign_in::check_password(raw)?;
            Val::Text(crate::passwords::hash(raw).map_err(|e| e.to_string())?)
        }
        Kind::OneOf(words) => {
            if !words.contains(&raw_t) {
                return Err(format!("must be one of: {}", words.join(", ")));
            }
            Val::Text(raw_t.to_string())
        }
    })
}

/// Alert levels from `name[key][]` (or `name[key]`) for each of 3scale's four lists: `None`
/// when none is given; lists not given stay empty.
fn levels_given(p: &Form, name: &str) -> Option<Result<Val, String>> {
    use tollgate_domain::notify::NotificationSettings;
    let prefix = format!("{name}[");
    if !p.0.iter().any(|(k, _)| k.starts_with(&prefix)) {
        return None;
    }
    let mut settings = serde_json::Map::new();
    for key in NotificationSettings::KEYS {
        let values = p.all(&format!("{name}[{key}]"));
        match NotificationSettings::parse_levels(key, &values) {
            Ok(levels) => settings.insert(key.into(), serde_json::json!(levels)),
            Err(e) => {
                let why = e.0.first().map(|x| format!("{key}: {}", x.message));
                return Some(Err(why.unwrap_or_default()));
            }
        };
    }
    Some(Ok(Val::Text(serde_json::Value::Object(settings).to_string())))
}

fn given<'p>(p: &'p Form, f: &Field) -> Option<&'p str> {
    p.get(f.name)
        .or_else(|| if f.alias.is_empty() { None } else { p.get(f.alias) })
}

/// A case-insensitive "contains" pattern for `LOWER(column) LIKE`: the term lowered, its
/// wildcards dropped (a search for `50%` looks for `50`).
pub fn like_pattern(term: &str) -> String {
    format!("%{}%", term.trim().to_lowercase().replace(['%', '_'], ""))
}

/// How a list is cut beyond its filters: a search over its text columns, and an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Listing<'a> {
    pub search: Option<&'a str>,
    /// Rows the search also finds, whatever their text (e.g. accounts by their users' e-mails).
    pub or_ids: &'a [i64],
    pub order: Option<Order>,
}

/// A list's order: one of the resource's columns ([`Resource::sortable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub column: &'static str,
    pub descending: bool,
}

/// One cell of a [`Record`], typed by its field's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    /// Money shown as a decimal string.
    Money(Option<Decimal>),
    /// Money shown as a number.
    Fee(Option<Decimal>),
    Address(Option<Address>),
    /// A JSON document (alert levels).
    Json(Option<serde_json::Value>),
}

/// What a behaviour adds to a record beyond its columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Extra {
    Bool(bool),
    Text(String),
    Strings(Vec<String>),
    /// An empty object (`{}`), e.g. 3scale's `annotations`.
    Empty,
}

/// A row as read: its cells in the declaration's order (id, scope, fields, timestamps), and
/// what the behaviour added.
#[derive(Debug, Clone)]
pub struct Record {
    pub resource: &'static Resource,
    pub cells: Vec<(&'static str, Cell)>,
    pub extra: Vec<(&'static str, Extra)>,
}

impl Record {
    pub fn id(&self) -> i64 {
        self.int("id").unwrap_or_default()
    }

    pub fn cell(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.cell(name) {
            Some(Cell::Int(v)) => *v,
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.cell(name) {
            Some(Cell::Text(v)) => v.as_deref(),
            _ => None,
        }
    }

    /// A money cell (a price or a fee).
    pub fn money(&self, name: &str) -> Option<Decimal> {
        match self.cell(name) {
            Some(Cell::Money(v) | Cell::Fee(v)) => *v,
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.cell(name) {
            Some(Cell::Bool(v)) => *v,
            _ => None,
        }
    }

    /// Adds (or replaces) an extra.
    pub fn put(&mut self, name: &'static str, extra: Extra) {
        self.extra.retain(|(n, _)| *n != name);
        self.extra.push((name, extra));
    }
}

impl Resource {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validated values for a new row; every bad field is reported.
    pub fn values_for_create(&self, p: &Form) -> Result<Values, Invalid> {
        let mut values = Vec::new();
        let mut errors = Invalid::default();
        // An address is written by its own call, never by a form.
        for f in self.fields.iter().filter(|f| f.kind != Kind::Address) {
            if f.kind == Kind::Levels {
                match levels_given(p, f.name) {
                    Some(Ok(v)) => values.push((f.name, v)),
                    Some(Err(e)) => errors.push(f.name, e),
                    None => values.push((f.name, Val::NullText)),
                }
                continue;
            }
            match (given(p, f), f.on_create) {
                (Some(raw), _) if !(raw.trim().is_empty() && f.on_create == OnCreate::Required) => {
                    match parse_field(f, raw) {
                        Ok(v) => values.push((f.name, v)),
                        Err(e) => errors.push(f.name, e),
                    }
                }
                (_, OnCreate::Required) => errors.push(f.name, "can't be blank"),
                (_, OnCreate::Default(d)) => match parse_field(f, d) {
                    Ok(v) => values.push((f.name, v)),
                    Err(e) => errors.push(f.name, e),
                },
                (_, OnCreate::Optional) => values.push((f.name, f.kind.null())),
                (_, OnCreate::Derived) => {}
            }
        }
        errors.or(values)
    }

    /// Validated values for an update: only updatable fields that were given. Unknown and
    /// read-only parameters are ignored (clients send the whole entity back).
    pub fn values_for_update(&self, p: &Form) -> Result<Values, Invalid> {
        let mut values = Vec::new();
        let mut errors = Invalid::default();
        for f in self.fields.iter().filter(|f| f.updatable && f.kind != Kind::Address) {
            if f.kind == Kind::Levels {
                match levels_given(p, f.name) {
                    Some(Ok(v)) => values.push((f.name, v)),
                    Some(Err(e)) => errors.push(f.name, e),
                    None => {}
                }
                continue;
            }
            let Some(raw) = given(p, f) else { continue };
            if raw.trim().is_empty() && f.stored && matches!(f.on_create, OnCreate::Required | OnCreate::Derived) {
                errors.push(f.name, "can't be blank");
                continue;
            }
            match parse_field(f, raw) {
                Ok(v) => values.push((f.name, v)),
                Err(e) => errors.push(f.name, e),
            }
        }
        errors.or(values)
    }

    fn stored(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.stored)
    }

    fn columns(&self) -> String {
        let mut cols = vec!["id"];
        cols.extend(self.scope.iter().copied());
        cols.extend(self.stored().map(|f| f.name));
        cols.extend(["created_at", "updated_at"]);
        cols.join(", ")
    }

    fn scope_where(&self, first_param: usize) -> String {
        self.scope
            .iter()
            .enumerate()
            .map(|(i, c)| format!(" AND {c} = ${}", first_param + i))
            .collect()
    }

    /// A row as a record.
    fn record(&'static self, row: &sqlx::any::AnyRow) -> Result<Record> {
        let decimal = |name: &str| -> Result<Option<Decimal>> {
            match row.try_get::<Option<String>, _>(name)? {
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| StoreError::Internal(format!("{}.{name} holds `{text}`", self.table))),
                None => Ok(None),
            }
        };
        let mut cells = vec![("id", Cell::Int(Some(row.try_get::<i64, _>("id")?)))];
        for c in self.scope {
            cells.push((*c, Cell::Int(row.try_get::<Option<i64>, _>(*c)?)));
        }
        for f in self.stored() {
            let cell = match f.kind {
                Kind::Count | Kind::Id | Kind::OptCount => Cell::Int(row.try_get::<Option<i64>, _>(f.name)?),
                Kind::Bool => Cell::Bool(row.try_get::<Option<i64>, _>(f.name)?.map(|v| v != 0)),
                Kind::Money => Cell::Money(decimal(f.name)?),
                Kind::Fee => Cell::Fee(decimal(f.name)?),
                Kind::Text | Kind::SystemName | Kind::OneOf(_) | Kind::Url | Kind::UsagePath => {
                    Cell::Text(row.try_get::<Option<String>, _>(f.name)?)
                }
                Kind::Levels => Cell::Json(
                    row.try_get::<Option<String>, _>(f.name)?
                        .and_then(|s| serde_json::from_str(&s).ok()),
                ),
                Kind::Address => Cell::Address(
                    row.try_get::<Option<String>, _>(f.name)?
                        .and_then(|s| serde_json::from_str(&s).ok()),
                ),
                Kind::Password => continue,
            };
            cells.push((f.name, cell));
        }
        cells.push(("created_at", Cell::Text(Some(row.try_get("created_at")?))));
        cells.push(("updated_at", Cell::Text(Some(row.try_get("updated_at")?))));
        Ok(Record {
            resource: self,
            cells,
            extra: Vec::new(),
        })
    }

    /// Rows matching every `column = value` filter, further limited to rows whose `column` is
    /// one of `ids` (e.g. the services a member may see; in SQL, so that pages stay whole), in
    /// id order, one page of them.
    pub async fn select(
        &'static self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        only: Option<(&str, &[i64])>,
        page: Page,
    ) -> Result<Vec<Record>> {
        self.select_listed(conn, filters, only, &Listing::default(), page).await
    }

    /// [`Resource::select`], also matching `listing`'s search and in its order.
    pub async fn select_listed(
        &'static self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        only: Option<(&str, &[i64])>,
        listing: &Listing<'_>,
        page: Page,
    ) -> Result<Vec<Record>> {
        let (search, term) = self.search_condition(filters.len() + 1, listing);
        let order = match listing.order {
            Some(o) => format!("{} {}, id", o.column, if o.descending { "DESC" } else { "ASC" }),
            None => "id".into(),
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE 1 = 1{}{search} ORDER BY {order} LIMIT {} OFFSET {}",
            self.columns(),
            self.table,
            conditions(filters, only),
            page.per_page,
            page.offset()
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in filters {
            q = bind(q, v);
        }
        if let Some(term) = term {
            q = q.bind(term);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// How many rows [`Resource::select`] pages through with these filters.
    pub async fn count(
        &'static self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        only: Option<(&str, &[i64])>,
    ) -> Result<i64> {
        self.count_listed(conn, filters, only, &Listing::default()).await
    }

    /// How many rows [`Resource::select_listed`] pages through.
    pub async fn count_listed(
        &'static self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        only: Option<(&str, &[i64])>,
        listing: &Listing<'_>,
    ) -> Result<i64> {
        let (search, term) = self.search_condition(filters.len() + 1, listing);
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE 1 = 1{}{search}",
            self.table,
            conditions(filters, only)
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in filters {
            q = bind(q, v);
        }
        if let Some(term) = term {
            q = q.bind(term);
        }
        Ok(q.fetch_one(&mut *conn).await?.try_get("n")?)
    }

    /// The columns a search looks in: the stored text fields.
    pub fn searchable(&self) -> impl Iterator<Item = &Field> {
        self.stored()
            .filter(|f| matches!(f.kind, Kind::Text | Kind::SystemName | Kind::Url | Kind::OneOf(_)))
    }

    /// A column a list may be ordered by (`id`, a stored field, the timestamps), as declared:
    /// what is put in SQL is the declaration's name, never the client's text.
    pub fn sortable(&self, name: &str) -> Option<&'static str> {
        ["id", "created_at", "updated_at"]
            .into_iter()
            .find(|c| *c == name)
            .or_else(|| {
                self.fields
                    .iter()
                    .find(|f| {
                        f.stored && f.name == name && !matches!(f.kind, Kind::Password | Kind::Address | Kind::Levels)
                    })
                    .map(|f| f.name)
            })
    }

    /// ` AND (LOWER(a) LIKE $n OR …)` and its one parameter, for a search.
    fn search_condition(&self, param: usize, listing: &Listing) -> (String, Option<String>) {
        let Some(term) = listing.search.map(str::trim).filter(|t| !t.is_empty()) else {
            return (String::new(), None);
        };
        let mut columns: Vec<String> = self
            .searchable()
            .map(|f| format!("LOWER(COALESCE({}, '')) LIKE ${param}", f.name))
            .collect();
        // The pattern is bound only when a column uses it (the parameter count must match).
        let pattern = (!columns.is_empty()).then(|| like_pattern(term));
        if !listing.or_ids.is_empty() {
            let ids: Vec<String> = listing.or_ids.iter().map(i64::to_string).collect();
            columns.push(format!("id IN ({})", ids.join(", ")));
        }
        if columns.is_empty() {
            return (" AND 1 = 0".into(), None);
        }
        (format!(" AND ({})", columns.join(" OR ")), pattern)
    }

    /// The one row with this id in `scope`, or not found.
    pub async fn find(&'static self, conn: &mut AnyConnection, scope: &[i64], id: i64) -> Result<Record> {
        let mut filters = vec![("id", Val::Int(id))];
        filters.extend(self.scope_filters(scope));
        self.select(conn, &filters, None, Page::FIRST)
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)
    }

    /// The row with this id whatever its scope (e.g. an application found by id alone).
    pub async fn find_any(&'static self, conn: &mut AnyConnection, id: i64) -> Result<Record> {
        self.select(conn, &[("id", Val::Int(id))], None, Page::FIRST)
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)
    }

    pub fn scope_filters(&self, scope: &[i64]) -> Vec<(&'static str, Val)> {
        self.scope.iter().zip(scope).map(|(c, v)| (*c, Val::Int(*v))).collect()
    }

    pub async fn insert(&'static self, conn: &mut AnyConnection, scope: &[i64], values: &Values) -> Result<Record> {
        let stored: Vec<&(&str, Val)> = values.iter().filter(|(n, _)| self.is_column(n)).collect();
        let mut cols: Vec<&str> = self.scope.to_vec();
        cols.extend(stored.iter().map(|(c, _)| *c));
        cols.extend(["created_at", "updated_at"]);
        let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) RETURNING {}",
            self.table,
            cols.join(", "),
            placeholders.join(", "),
            self.columns()
        );
        let ts = now();
        let mut q = sqlx::query(&sql);
        for s in scope {
            q = q.bind(*s);
        }
        for (_, v) in stored {
            q = bind(q, v);
        }
        q = q.bind(ts.clone()).bind(ts);
        match q.fetch_one(&mut *conn).await {
            Ok(row) => self.record(&row),
            Err(e) if is_unique_violation(&e) => Err(StoreError::invalid(self.unique_field, "has already been taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `name` is a column this resource writes (declared stored fields, and columns
    /// behaviours set that are not fields, like a service's token).
    fn is_column(&self, name: &str) -> bool {
        self.field(name).is_none_or(|f| f.stored)
    }

    pub async fn update(
        &'static self,
        conn: &mut AnyConnection,
        scope: &[i64],
        id: i64,
        values: &Values,
    ) -> Result<Record> {
        let stored: Vec<&(&str, Val)> = values.iter().filter(|(n, _)| self.is_column(n)).collect();
        if stored.is_empty() {
            return self.find(conn, scope, id).await;
        }
        let mut sets: Vec<String> = stored
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
            .collect();
        sets.push(format!("updated_at = ${}", stored.len() + 1));
        let sql = format!(
            "UPDATE {} SET {} WHERE id = ${}{} RETURNING {}",
            self.table,
            sets.join(", "),
            stored.len() + 2,
            self.scope_where(stored.len() + 3),
            self.columns()
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in &stored {
            q = bind(q, v);
        }
        q = q.bind(now()).bind(id);
        for s in scope {
            q = q.bind(*s);
        }
        match q.fetch_optional(&mut *conn).await {
            Ok(Some(row)) => self.record(&row),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) if is_unique_violation(&e) => Err(StoreError::invalid(self.unique_field, "has already been taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the event named `event`; not found if the resource has no such event, invalid
    /// naming the state when the current one does not allow it.
    pub async fn transition(
        &'static self,
        conn: &mut AnyConnection,
        scope: &[i64],
        id: i64,
        event: &str,
    ) -> Result<Record> {
        let t = self
            .transitions
            .iter()
            .find(|t| t.event == event)
            .ok_or(StoreError::NotFound)?;
        let current = self.find(conn, scope, id).await?;
        let now_value = current.text(t.column).unwrap_or_default().to_string();
        if !t.from.is_empty() && !t.from.contains(&now_value.as_str()) {
            return Err(StoreError::invalid(
                t.column,
                format!("cannot {event} from {now_value}"),
            ));
        }
        self.update(conn, scope, id, &vec![(t.column, Val::Text(t.to.to_string()))])
            .await
    }

    pub async fn delete(&self, conn: &mut AnyConnection, scope: &[i64], id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = $1{}", self.table, self.scope_where(2));
        let mut q = sqlx::query(&sql).bind(id);
        for s in scope {
            q = q.bind(*s);
        }
        match q.execute(&mut *conn).await?.rows_affected() {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

/// The `AND …` of a select: one `$n` per filter, then the allowed ids inlined (integers, so
/// inlining them is safe; none allowed means no row).
fn conditions(filters: &[(&str, Val)], only: Option<(&str, &[i64])>) -> String {
    let mut conditions: String = filters
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!(" AND {c} = ${}", i + 1))
        .collect();
    if let Some((column, ids)) = only {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        conditions.push_str(&match list.is_empty() {
            true => " AND 1 = 0".to_string(),
            false => format!(" AND {column} IN ({})", list.join(", ")),
        });
    }
    conditions
}

pub fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    v: &Val,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    match v {
        Val::Text(s) => q.bind(s.clone()),
        Val::Int(i) => q.bind(*i),
        Val::NullInt => q.bind(Option::<i64>::None),
        Val::NullText => q.bind(Option::<String>::None),
    }
}

/// A state event beyond a column's transitions, as named in the URL, with what it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInput {
    pub name: String,
    /// `change_plan`'s plan.
    pub plan_id: Option<PlanId>,
}

impl EventInput {
    /// The event's name and what it takes from the form.
    pub fn from_form(name: &str, form: &Form) -> Result<Self, Invalid> {
        Ok(EventInput {
            name: name.to_string(),
            plan_id: form.parse("plan_id")?,
        })
    }

    /// The plan a `change_plan` moves to.
    pub fn plan(&self) -> Result<PlanId, Invalid> {
        self.plan_id.ok_or_else(|| Invalid::field("plan_id", "can't be blank"))
    }
}

/// A write in progress: the transaction, the URL's scope, the row's id (`None`: an insert) and
/// the validated values, which the behaviour may complete.
pub struct Write<'a> {
    pub conn: &'a mut AnyConnection,
    pub scope: &'a [i64],
    pub id: Option<i64>,
    pub values: &'a mut Values,
}

/// What a resource does beyond storing its fields. Every hook runs inside the write's
/// transaction; the defaults do nothing.
#[async_trait]
pub trait Behaviour: Send + Sync {
    /// Before an insert or update: derive fields, check references.
    async fn before_write(&self, _w: Write<'_>) -> Result<()> {
        Ok(())
    }

    /// After an insert: rows that come with a new one (a service's `hits`).
    async fn after_create(&self, _conn: &mut AnyConnection, _created: &Record, _values: &Values) -> Result<()> {
        Ok(())
    }

    /// Events beyond the resource's transitions (`default`, `change_plan`, …).
    fn events(&self) -> &'static [&'static str] {
        &[]
    }

    /// Carries out one of [`Behaviour::events`] on `current`.
    async fn event(
        &self,
        _conn: &mut AnyConnection,
        _scope: &[i64],
        _current: &Record,
        _event: &EventInput,
    ) -> Result<()> {
        Err(StoreError::NotFound)
    }

    /// Adds the fields 3scale shows that are not columns, to a whole list at once (one query
    /// per list at most, never one per row).
    async fn decorate(&self, _conn: &mut AnyConnection, _items: &mut [Record]) -> Result<()> {
        Ok(())
    }
}

/// A resource that only stores its fields.
pub struct Plain;

impl Behaviour for Plain {}

/// The first scope value (the owner a resource hangs under).
pub fn owner(scope: &[i64]) -> Result<i64> {
    scope
        .first()
        .copied()
        .ok_or_else(|| StoreError::Internal("resource mounted without its owner".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Resource = Resource {
        name: "thing",
        collection: "things",
        table: "things",
        scope: &["service_id"],
        fields: &[
            field("name", Kind::Text, OnCreate::Required),
            field("system_name", Kind::SystemName, OnCreate::Derived),
            field("cost", Kind::Money, OnCreate::Default("0")),
            field("max", Kind::OptCount, OnCreate::Optional),
            field("period", Kind::OneOf(&["day", "month"]), OnCreate::Required),
            fixed("flag", Kind::Bool, OnCreate::Default("false")),
            input("state_event", Kind::OneOf(&["publish", "hide"])),
        ],
        unique_field: "system_name",
        transitions: &[],
    };

    #[test]
    fn create_reports_every_bad_field() {
        let p = Form::of(&[
            ("cost", "1.23456"),
            ("max", "-1"),
            ("period", "week"),
            ("state_event", "x"),
        ]);
        let Err(Invalid(errors)) = R.values_for_create(&p) else {
            panic!()
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "cost", "max", "period", "state_event"]);
    }

    #[test]
    fn create_fills_defaults_and_nulls() {
        let p = Form::of(&[("name", "x"), ("period", "day")]);
        let v = R.values_for_create(&p).unwrap();
        assert_eq!(
            v,
            vec![
                ("name", Val::Text("x".into())),
                ("cost", Val::Text("0".into())),
                ("max", Val::NullInt),
                ("period", Val::Text("day".into())),
                ("flag", Val::Int(0)),
            ]
        );
        assert!(!R.is_column("state_event") && R.is_column("service_token"));
    }

    #[test]
    fn update_ignores_unknown_and_fixed_fields() {
        let p = Form::of(&[("id", "9"), ("flag", "true"), ("name", "y"), ("created_at", "x")]);
        assert_eq!(R.values_for_update(&p).unwrap(), vec![("name", Val::Text("y".into()))]);
        let blank = Form::of(&[("name", "")]);
        assert!(R.values_for_update(&blank).is_err());
    }
}
