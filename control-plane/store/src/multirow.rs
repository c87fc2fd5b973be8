//! Multi-row statements: many rows in one statement, so that work over thousands of rows
//! (the billing run, the usage flush) costs a round trip per few thousand rows rather than
//! one per row — on PostgreSQL each statement is a network round trip, and SQLite gains too.
//! The engines' parameter limits bound a statement: SQLite's is 32,766, PostgreSQL's 65,535.
//! [`run_columns`] goes further on PostgreSQL: one array per column, so one statement of fixed
//! text whatever the rows (the usage flush's writer).

/// Bound values per statement, at most (under SQLite's limit).
pub const MAX_PARAMS: usize = 32_000;

/// How many rows of `columns` bound values one statement may take.
pub fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).max(1)
}

/// How a statement writes its placeholders. PostgreSQL takes `$N`. SQLite takes `$N` and `?N`
/// too, but keeps them in a list it searches for each one (as sqlx does when binding): a
/// statement of 30,000 took seconds to prepare and bind. A bare `?` is just the next one.
/// Either way a statement's placeholders are its values in order, with no others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    Dollar,
    Bare,
}

impl Placeholders {
    pub fn of(conn: &sqlx::AnyConnection) -> Placeholders {
        if conn.backend_name() == "SQLite" {
            Placeholders::Bare
        } else {
            Placeholders::Dollar
        }
    }
}

/// `($1, $2, …), (…)` or `(?, ?, …), (…)`: `rows` rows of `columns` placeholders, the only
/// ones of their statement.
pub fn values(style: Placeholders, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 7);
    for i in 0..rows * columns {
        let column = i % columns;
        if i > 0 {
            out.push_str(if column == 0 { "), (" } else { ", " });
        }
        match style {
            Placeholders::Dollar => {
                out.push('$');
                out.push_str(&(i + 1).to_string());
            }
            Placeholders::Bare => out.push('?'),
        }
    }
    if rows * columns > 0 {
        out.insert(0, '(');
        out.push(')');
    }
    out
}

/// A statement being bound.
pub type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Runs `sql(placeholders)` for `rows`, as few statements as the parameter limit allows:
/// `placeholders` holds a part's rows of `bound` values numbered from `$1`, and `bind` binds
/// one row's values in that order. The rows the statements return (with `RETURNING`), in
/// order.
pub async fn run<R>(
    conn: &mut sqlx::AnyConnection,
    rows: &[R],
    bound: usize,
    sql: impl Fn(&str) -> String,
    bind: impl for<'q> Fn(Query<'q>, &R) -> Query<'q>,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    let mut out = Vec::new();
    for part in rows.chunks(rows_per_statement(bound)) {
        let text = sql(&values(Placeholders::of(conn), part.len(), bound));
        let mut query = sqlx::query(&text);
        for row in part {
            query = bind(query, row);
        }
        out.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Rows given column by column, for [`run_columns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Int(Vec<i64>),
    Text(Vec<String>),
}

impl From<Vec<i64>> for Column {
    fn from(v: Vec<i64>) -> Column {
        Column::Int(v)
    }
}

impl From<Vec<String>> for Column {
    fn from(v: Vec<String>) -> Column {
        Column::Text(v)
    }
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Column::Int(_) => "BIGINT[]",
            Column::Text(_) => "TEXT[]",
        }
    }

    /// The column as a PostgreSQL array literal (`{1,2}`, `{"a","b"}`), bound as one text value.
    fn array_literal(&self) -> String {
        let mut out = String::from("{");
        match self {
            Column::Int(v) => {
                for (i, n) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&n.to_string());
                }
            }
            Column::Text(v) => {
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    for c in s.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        }
        out.push('}');
        out
    }

    /// Binds the column's value in `row` (below [`Column::len`], which [`run_columns`] checks).
    fn bind<'q>(&self, query: Query<'q>, row: usize) -> Query<'q> {
        match self {
            Column::Int(v) => query.bind(v.get(row).copied()),
            Column::Text(v) => query.bind(v.get(row).cloned()),
        }
    }
}

/// Runs `sql(source)` over rows given as `columns` (of equal length), where `source` is a row
/// source for a `FROM` clause whose columns are `v.column1`, `v.column2`, …. On PostgreSQL it
/// is `unnest(…)` over one array per column: one statement whatever the rows, the same text
/// each time (prepared once), each column parsed as one value — no planning of thousands of
/// placeholders. On SQLite it is `(VALUES …)`, as [`run`] binds it. The rows the statements
/// return (with `RETURNING`).
pub async fn run_columns(
    conn: &mut sqlx::AnyConnection,
    columns: &[Column],
    sql: impl Fn(&str) -> String,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    let rows = columns.first().map_or(0, Column::len);
    if columns.iter().any(|c| c.len() != rows) {
        return Err(sqlx::Error::Protocol("multirow: columns of unequal length".into()));
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    if Placeholders::of(conn) == Placeholders::Dollar {
        let arrays: Vec<String> = (1..=columns.len())
            .zip(columns)
            .map(|(i, c)| format!("CAST(${i} AS {})", c.sql_type()))
            .collect();
        let names: Vec<String> = (1..=columns.len()).map(|i| format!("column{i}")).collect();
        let text = sql(&format!("unnest({}) AS v({})", arrays.join(", "), names.join(", ")));
        let mut query = sqlx::query(&text);
        for c in columns {
            query = query.bind(c.array_literal());
        }
        return query.fetch_all(&mut *conn).await;
    }
    let mut out = Vec::new();
    let per_statement = rows_per_statement(columns.len());
    for start in (0..rows).step_by(per_statement) {
        let part = start..rows.min(start + per_statement);
        let source = format!(
            "(VALUES {}) AS v",
            values(Placeholders::Bare, part.len(), columns.len())
        );
        let text = sql(&source);
        let mut query = sqlx::query(&text);
        for row in part {
            for c in columns {
                query = c.bind(query, row);
            }
        }
        out.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// A comma list of ids for `IN (…)`, sorted and without repeats. Integers only, so there is
/// nothing to inject; `NULL` for none (`IN (NULL)` matches nothing).
pub fn id_list(ids: impl IntoIterator<Item = i64>) -> String {
    let mut ids: Vec<i64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return "NULL".into();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_across_rows() {
        assert_eq!(values(Placeholders::Dollar, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(Placeholders::Bare, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values(Placeholders::Dollar, 0, 2), "");
    }

    #[test]
    fn a_statement_stays_within_both_engines_limits() {
        for columns in [1, 5, 12, 13] {
            assert!(rows_per_statement(columns) * columns <= 32_766);
        }
        assert_eq!(rows_per_statement(0), MAX_PARAMS);
    }

    #[test]
    fn columns_become_postgres_array_literals_with_text_quoted() {
        assert_eq!(Column::Int(vec![1, -2]).array_literal(), "{1,-2}");
        assert_eq!(
            Column::Text(vec!["2xx".into(), r#"a"b\c"#.into()]).array_literal(),
            r#"{"2xx","a\"b\\c"}"#
        );
        assert_eq!(Column::Int(vec![]).array_literal(), "{}");
    }

    #[tokio::test]
    async fn columns_run_as_rows_and_unequal_ones_are_refused() {
        use sqlx::{Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:").await.unwrap();
        let sql = |source: &str| format!("SELECT v.column1 + 1, v.column2 FROM {source} WHERE true");
        let columns = [Column::Int(vec![1, 2]), Column::Text(vec!["a".into(), "b".into()])];
        let rows = run_columns(&mut conn, &columns, sql).await.unwrap();
        let read: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(read, [(2, "a".into()), (3, "b".into())]);
        let uneven = [Column::Int(vec![1, 2]), Column::Text(vec!["a".into()])];
        assert!(run_columns(&mut conn, &uneven, sql).await.is_err());
    }

    #[test]
    fn id_lists_are_sorted_once_each_and_never_empty() {
        assert_eq!(id_list([3, 1, 3]), "1, 3");
        assert_eq!(id_list([]), "NULL");
    }
}
