//! The catalog (SPEC §3): services with their metrics, mapping rules and proxy settings,
//! application plans, developer accounts and their applications. Each module holds one entity:
//! its type (serialized in 3scale's shape) and its repository functions over [`Db`].

pub mod accounts;
pub mod applications;
pub mod backends;
pub mod behaviour;
pub mod mapping_rules;
pub mod metrics;
pub mod plans;
pub mod provider;
pub mod proxy;
pub mod resource;
pub mod services;
pub mod subscriptions;

use crate::error::ApiError;
use crate::params::Params;

/// A system name derived from a display name ("My API" → "my_api").
pub fn system_name_from(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '/') {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

/// `page` / `per_page` as 3scale takes them (per_page at most 500).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        let page = p.parse::<i64>("page")?.unwrap_or(1);
        let per_page = p.parse::<i64>("per_page")?.unwrap_or(500);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be 1 or more"));
        }
        if !(1..=500).contains(&per_page) {
            return Err(ApiError::invalid("per_page", "must be between 1 and 500"));
        }
        Ok(Self { page, per_page })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names() {
        assert_eq!(system_name_from("My API"), "my_api");
    }
}
