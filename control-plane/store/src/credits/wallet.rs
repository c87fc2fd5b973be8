//! An account's wallet as authrep sees it: what was granted, what the service's calls cost.

use crate::db::Db;
use crate::error::Result;
use tollgate_domain::catalog::BillingType;
use tollgate_domain::credits::Wallet;
use tollgate_domain::ids::{AccountId, ServiceId};

/// The account's wallet for calls to `service`; `None` for a postpaid account.
pub async fn find(db: &Db, account: AccountId, service: ServiceId) -> Result<Option<Wallet>> {
    if crate::catalog::accounts::billing_type(db, account).await? != Some(BillingType::Prepaid) {
        return Ok(None);
    }
    super::ledger::open_wallet(db, account).await?;
    let rates = super::rates::for_service(&mut *db.pool.acquire().await?, service).await?;
    Ok(Some(Wallet {
        account_id: account,
        granted_units: super::ledger::granted_units(db, account).await?,
        rates,
        purchase_url: super::settings::read(db).await?.purchase_url,
    }))
}
