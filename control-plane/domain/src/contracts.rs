//! Contracts' plan history (SPEC §6): every plan an application, a service subscription or an
//! account has been on, from which day, with the plan's fees and trial as they were then. The
//! billing run bills any month from these rows, never from the plans' current state.

use crate::ids::{AccountId, PlanId};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// What kind of contract: an application (on an application plan), a service subscription (on
/// a service plan) or the account itself (on an account plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContractType {
    Application,
    Service,
    Account,
}

impl ContractType {
    pub const ALL: [ContractType; 3] = [ContractType::Account, ContractType::Service, ContractType::Application];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractType::Application => "application",
            ContractType::Service => "service",
            ContractType::Account => "account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One row of history: the contract on one plan over the days `[starts_on, ends_on)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPeriod {
    pub id: i64,
    pub contract_type: ContractType,
    pub contract_id: i64,
    pub account_id: AccountId,
    pub plan_id: PlanId,
    pub plan_name: String,
    pub setup_fee: Decimal,
    pub cost_per_month: Decimal,
    /// The first day billed.
    pub trial_ends_on: NaiveDate,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
}
