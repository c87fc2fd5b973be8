//! One implementation of 3scale-style CRUD for every catalog table.
//!
//! A [`Resource`] declares its table, the columns fixed by the URL (its scope, e.g. the
//! service id), and its fields with their kinds. From that the engine validates parameters
//! (every bad field reported at once, 422, named), writes rows, and renders them as 3scale does:
//! wrapped in the entity's name, money as decimal strings (`"20.0"`), booleans as booleans.
//! Behaviour that is more than a field (a service's built-in `hits`, overlapping pricing
//! tiers) lives in the entity's own module, around these calls.

use super::Page;
use crate::error::{is_unique_violation, ApiError};
use crate::params::Params;
use crate::time::now;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCreate {
    Required,
    Default(&'static str),
    /// NULL when not given.
    Optional,
    /// Filled in by the owning module (e.g. a system name derived from the name).
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
}

pub const fn field(name: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        name,
        alias: "",
        kind,
        on_create,
        updatable: true,
    }
}

pub const fn aliased(name: &'static str, alias: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        name,
        alias,
        kind,
        on_create,
        updatable: true,
    }
}

pub const fn fixed(name: &'static str, kind: Kind, on_create: OnCreate) -> Field {
    Field {
        name,
        alias: "",
        kind,
        on_create,
        updatable: false,
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

/// 3scale's rule for system names: letters, digits, `_`, `-` and `/`, no spaces.
pub fn check_system_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("can't be blank".into());
    }
    if s.len() > 255
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
    {
        return Err("invalid: use only letters, digits, '_', '-' and '/'".into());
    }
    Ok(())
}

fn parse_field(f: &Field, raw: &str) -> Result<Val, String> {
    let raw_t = raw.trim();
    Ok(match f.kind {
        Kind::Text => Val::Text(raw.to_string()),
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
        Kind::OneOf(words) => {
            if !words.contains(&raw_t) {
                return Err(format!("must be one of: {}", words.join(", ")));
            }
            Val::Text(raw_t.to_string())
        }
    })
}

fn given<'p>(p: &'p Params, f: &Field) -> Option<&'p str> {
    p.get(f.name)
        .or_else(|| if f.alias.is_empty() { None } else { p.get(f.alias) })
}

impl Resource {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validated values for a new row; every bad field is reported.
    pub fn values_for_create(&self, p: &Params) -> Result<Values, ApiError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for f in self.fields {
            match (given(p, f), f.on_create) {
                (Some(raw), _) if !(raw.trim().is_empty() && f.on_create == OnCreate::Required) => {
                    match parse_field(f, raw) {
                        Ok(v) => values.push((f.name, v)),
                        Err(e) => errors.push((f.name.to_string(), e)),
                    }
                }
                (_, OnCreate::Required) => errors.push((f.name.to_string(), "can't be blank".into())),
                (_, OnCreate::Default(d)) => match parse_field(f, d) {
                    Ok(v) => values.push((f.name, v)),
                    Err(e) => errors.push((f.name.to_string(), e)),
                },
                (_, OnCreate::Optional) => values.push((f.name, f.kind.null())),
                (_, OnCreate::Derived) => {}
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }

    /// Validated values for an update: only updatable fields that were given. Unknown and
    /// read-only parameters are ignored (clients send the whole entity back).
    pub fn values_for_update(&self, p: &Params) -> Result<Values, ApiError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        for f in self.fields.iter().filter(|f| f.updatable) {
            let Some(raw) = given(p, f) else { continue };
            if raw.trim().is_empty() && matches!(f.on_create, OnCreate::Required | OnCreate::Derived) {
                errors.push((f.name.to_string(), "can't be blank".into()));
                continue;
            }
            match parse_field(f, raw) {
                Ok(v) => values.push((f.name, v)),
                Err(e) => errors.push((f.name.to_string(), e)),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(ApiError::Invalid(errors))
        }
    }

    fn columns(&self) -> String {
        let mut cols = vec!["id"];
        cols.extend(self.scope.iter().copied());
        cols.extend(self.fields.iter().map(|f| f.name));
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

    /// A row as 3scale shows it.
    pub fn to_json(&self, row: &crate::db::Row) -> Result<Value, ApiError> {
        let mut m = Map::new();
        m.insert("id".into(), json!(row.try_get::<i64, _>("id")?));
        for c in self.scope {
            m.insert((*c).into(), json!(row.try_get::<Option<i64>, _>(*c)?));
        }
        for f in self.fields {
            let v = match f.kind {
                Kind::Count | Kind::Id | Kind::OptCount => json!(row.try_get::<Option<i64>, _>(f.name)?),
                Kind::Bool => json!(row.try_get::<Option<i64>, _>(f.name)?.map(|v| v != 0)),
                Kind::Money => match row.try_get::<Option<String>, _>(f.name)? {
                    Some(text) => json!(money_text(&text)),
                    None => Value::Null,
                },
                Kind::Fee => match row.try_get::<Option<String>, _>(f.name)? {
                    Some(text) => money_number(&text),
                    None => Value::Null,
                },
                Kind::Text | Kind::SystemName | Kind::OneOf(_) => json!(row.try_get::<Option<String>, _>(f.name)?),
            };
            m.insert(f.name.into(), v);
        }
        m.insert("created_at".into(), json!(row.try_get::<String, _>("created_at")?));
        m.insert("updated_at".into(), json!(row.try_get::<String, _>("updated_at")?));
        Ok(Value::Object(m))
    }

    /// Rows matching every `column = value` filter, in id order, optionally one page of them.
    pub async fn select(
        &self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        page: Option<Page>,
    ) -> Result<Vec<Value>, ApiError> {
        self.select_only(conn, filters, None, page).await
    }

    /// [`select`](Self::select), further limited to rows whose `column` is one of `ids` (e.g.
    /// the services a member may see) — in SQL, so that pages stay whole.
    pub async fn select_only(
        &self,
        conn: &mut AnyConnection,
        filters: &[(&str, Val)],
        only: Option<(&str, &[i64])>,
        page: Option<Page>,
    ) -> Result<Vec<Value>, ApiError> {
        let mut conditions: String = filters
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!(" AND {c} = ${}", i + 1))
            .collect();
        if let Some((column, ids)) = only {
            // Integers, so inlining them is safe; none allowed means no row.
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            conditions.push_str(&match list.is_empty() {
                true => " AND 1 = 0".to_string(),
                false => format!(" AND {column} IN ({})", list.join(", ")),
            });
        }
        let mut sql = format!(
            "SELECT {} FROM {} WHERE 1 = 1{conditions} ORDER BY id",
            self.columns(),
            self.table
        );
        if let Some(page) = page {
            sql.push_str(&format!(" LIMIT {} OFFSET {}", page.per_page, page.offset()));
        }
        let mut q = sqlx::query(&sql);
        for (_, v) in filters {
            q = bind(q, v);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        rows.iter().map(|r| self.to_json(r)).collect()
    }

    fn scope_filters(&self, scope: &[i64]) -> Vec<(&'static str, Val)> {
        self.scope.iter().zip(scope).map(|(c, v)| (*c, Val::Int(*v))).collect()
    }

    /// The rows in `scope`, optionally only those whose `column` is one of the given ids.
    pub async fn list(
        &self,
        conn: &mut AnyConnection,
        scope: &[i64],
        only: Option<(&str, &[i64])>,
        page: Option<Page>,
    ) -> Result<Vec<Value>, ApiError> {
        self.select_only(conn, &self.scope_filters(scope), only, page).await
    }

    /// Every row, whatever its scope (e.g. all plans of all services).
    pub async fn list_all(&self, conn: &mut AnyConnection) -> Result<Vec<Value>, ApiError> {
        self.select(conn, &[], None).await
    }

    pub async fn find(&self, conn: &mut AnyConnection, scope: &[i64], id: i64) -> Result<Value, ApiError> {
        let mut filters = vec![("id", Val::Int(id))];
        filters.extend(self.scope_filters(scope));
        self.select(conn, &filters, None)
            .await?
            .into_iter()
            .next()
            .ok_or(ApiError::NotFound)
    }

    pub async fn insert(&self, conn: &mut AnyConnection, scope: &[i64], values: &Values) -> Result<Value, ApiError> {
        let mut cols: Vec<&str> = self.scope.to_vec();
        cols.extend(values.iter().map(|(c, _)| *c));
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
        for (_, v) in values {
            q = bind(q, v);
        }
        q = q.bind(ts.clone()).bind(ts);
        match q.fetch_one(&mut *conn).await {
            Ok(row) => self.to_json(&row),
            Err(e) if is_unique_violation(&e) => Err(ApiError::invalid(self.unique_field, "has already been taken")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn update(
        &self,
        conn: &mut AnyConnection,
        scope: &[i64],
        id: i64,
        values: &Values,
    ) -> Result<Value, ApiError> {
        let mut sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
            .collect();
        sets.push(format!("updated_at = ${}", values.len() + 1));
        let sql = format!(
            "UPDATE {} SET {} WHERE id = ${}{} RETURNING {}",
            self.table,
            sets.join(", "),
            values.len() + 2,
            self.scope_where(values.len() + 3),
            self.columns()
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in values {
            q = bind(q, v);
        }
        q = q.bind(now()).bind(id);
        for s in scope {
            q = q.bind(*s);
        }
        match q.fetch_optional(&mut *conn).await {
            Ok(Some(row)) => self.to_json(&row),
            Ok(None) => Err(ApiError::NotFound),
            Err(e) if is_unique_violation(&e) => Err(ApiError::invalid(self.unique_field, "has already been taken")),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the event named `event`; 404 if the resource has no such event, 422 naming the
    /// state when the current one does not allow it.
    pub async fn transition(
        &self,
        conn: &mut AnyConnection,
        scope: &[i64],
        id: i64,
        event: &str,
    ) -> Result<Value, ApiError> {
        let t = self
            .transitions
            .iter()
            .find(|t| t.event == event)
            .ok_or(ApiError::NotFound)?;
        let current = self.find(conn, scope, id).await?;
        let now_value = current[t.column].as_str().unwrap_or_default().to_string();
        if !t.from.is_empty() && !t.from.contains(&now_value.as_str()) {
            return Err(ApiError::invalid(t.column, format!("cannot {event} from {now_value}")));
        }
        self.update(conn, scope, id, &vec![(t.column, Val::Text(t.to.to_string()))])
            .await
    }

    pub async fn delete(&self, conn: &mut AnyConnection, scope: &[i64], id: i64) -> Result<(), ApiError> {
        let sql = format!("DELETE FROM {} WHERE id = $1{}", self.table, self.scope_where(2));
        let mut q = sqlx::query(&sql).bind(id);
        for s in scope {
            q = q.bind(*s);
        }
        match q.execute(&mut *conn).await?.rows_affected() {
            0 => Err(ApiError::NotFound),
            _ => Ok(()),
        }
    }
}

fn bind<'q>(
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

/// Money as 3scale's JSON shows it: a decimal string with at least one decimal place.
pub fn money_text(stored: &str) -> String {
    match stored.parse::<Decimal>() {
        Ok(d) => {
            let d = d.normalize();
            if d.scale() == 0 {
                format!("{d}.0")
            } else {
                d.to_string()
            }
        }
        Err(_) => stored.to_string(),
    }
}

/// Money as a JSON number. serde_json holds numbers as f64, so the number is written only when
/// the f64's shortest form reads back as the same decimal (always, for realistic amounts with
/// at most 4 places); otherwise the exact decimal string is written instead.
pub fn money_number(stored: &str) -> Value {
    use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
    let Ok(d) = stored.parse::<Decimal>() else {
        return Value::String(stored.to_string());
    };
    match d
        .to_f64()
        .filter(|f| Decimal::from_f64(*f).map(|back| back == d).unwrap_or(false))
    {
        Some(f) => json!(f),
        None => Value::String(money_text(stored)),
    }
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
        ],
        unique_field: "system_name",
        transitions: &[],
    };

    #[test]
    fn create_reports_every_bad_field() {
        let p = Params::from_query("cost=1.23456&max=-1&period=week").unwrap();
        let ApiError::Invalid(errors) = R.values_for_create(&p).unwrap_err() else {
            panic!()
        };
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["name", "cost", "max", "period"]);
    }

    #[test]
    fn create_fills_defaults_and_nulls() {
        let p = Params::from_query("name=x&period=day").unwrap();
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
    }

    #[test]
    fn update_ignores_unknown_and_fixed_fields() {
        let p = Params::from_query("id=9&flag=true&name=y&created_at=x").unwrap();
        assert_eq!(R.values_for_update(&p).unwrap(), vec![("name", Val::Text("y".into()))]);
        let blank = Params::from_query("name=").unwrap();
        assert!(R.values_for_update(&blank).is_err());
    }

    #[test]
    fn fees_render_as_exact_numbers() {
        assert_eq!(money_number("12").to_string(), "12.0");
        assert_eq!(money_number("0.1").to_string(), "0.1");
        assert_eq!(money_number("1234567.8912").to_string(), "1234567.8912");
        assert_eq!(
            money_number("12345678901234567890.1234"),
            json!("12345678901234567890.1234")
        );
    }

    #[test]
    fn money_renders_like_rails() {
        assert_eq!(money_text("20"), "20.0");
        assert_eq!(money_text("0.1000"), "0.1");
        assert_eq!(money_text("1.2345"), "1.2345");
    }
}
