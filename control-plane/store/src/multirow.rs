//! Multi-row statements: many rows in one statement, so that work over thousands of rows
//! (the billing run, the usage flush) costs a round trip per few thousand rows rather than
//! one per row — on PostgreSQL each statement is a network round trip, and SQLite gains too.
//! The engines' parameter limits bound a statement: SQLite's is 32,766, PostgreSQL's 65,535.

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
    fn id_lists_are_sorted_once_each_and_never_empty() {
        assert_eq!(id_list([3, 1, 3]), "1, 3");
        assert_eq!(id_list([]), "NULL");
    }
}
