//! Billing (SPEC §6; 3scale Part IV) as stored: the provider's settings, invoices and their
//! lines, payments through a gateway, and the daily billing run that applies the domain's plan
//! ([`tollgate_domain::billing_plan`]).

pub mod invoices;
pub mod payments;
pub mod run;
pub mod settings;
