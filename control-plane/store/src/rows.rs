//! Reading stored columns back into domain values: money is decimal text in both engines.

use crate::error::{Result, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A money column (decimal text) as a `Decimal`; anything else there is our fault.
pub fn decimal(r: &AnyRow, column: &str) -> Result<rust_decimal::Decimal> {
    let text: String = r.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Internal(format!("{column} holds `{text}`, not a decimal")))
}

/// An optional money column.
pub fn opt_decimal(r: &AnyRow, column: &str) -> Result<Option<rust_decimal::Decimal>> {
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| {
        t.parse()
            .map_err(|_| StoreError::Internal(format!("{column} holds `{t}`, not a decimal")))
    })
    .transpose()
}
