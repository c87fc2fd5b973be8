//! The catalog (SPEC §3), the rules: states of applications, accounts and users, how a service
//! takes credentials, system names, mapping-rule patterns and pricing tiers — and the service
//! and application as the service-management API needs them.

use crate::billing::words;
use crate::form::{Form, FromForm};
use crate::ids::{AccountId, ApplicationId, PlanId, ServiceId, UserId};
use crate::invoice::Address;
use crate::Invalid;

words!(
    /// An application: waiting for approval, live, or suspended (SPEC §3.4).
    ApplicationState { Pending = "pending", Live = "live", Suspended = "suspended" }
);
words!(
    /// A developer account (3scale §7–8).
    AccountState { Pending = "pending", Approved = "approved", Rejected = "rejected", Suspended = "suspended" }
);
words!(
    /// How an account pays: invoices after the month, or prepaid credits per call.
    BillingType { Postpaid = "postpaid", Prepaid = "prepaid" }
);
words!(
    /// Which credentials a service's applications use (3scale's `backend_version`).
    BackendVersion { UserKey = "1", AppId = "2", Oidc = "oidc" }
);
words!(
    /// A provider or developer user's state.
    UserState { Pending = "pending", Active = "active", Suspended = "suspended" }
);
words!(
    /// An admin (everything) or a member (limited).
    Role { Admin = "admin", Member = "member" }
);
words!(
    /// The two environments of a service's proxy configs (`staging` is accepted for sandbox).
    Environment { Sandbox = "sandbox", Production = "production" }
);

impl Environment {
    /// From a path segment: `sandbox`, `staging` or `production`.
    pub fn from_segment(s: &str) -> Option<Environment> {
        match s {
            "staging" => Some(Environment::Sandbox),
            other => Environment::parse(other),
        }
    }
}

/// A service as the service-management API needs it (with its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: ServiceId,
    pub name: String,
    pub system_name: String,
    pub backend_version: BackendVersion,
    pub service_token: String,
    pub updated_at: String,
}

/// An application as the service-management API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: ApplicationId,
    pub account_id: AccountId,
    pub service_id: ServiceId,
    pub plan_id: PlanId,
    pub state: ApplicationState,
    pub user_key: Option<String>,
    /// The `app_id` credential.
    pub application_id: String,
}

/// An application's credential, as the hot cache keys applications.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    UserKey(String),
    AppId(String),
}

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

/// The HTTP methods a mapping rule may name.
pub const HTTP_METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
];

/// A mapping-rule pattern (3scale §19.4): starts with `/`; `{name}` variables are closed and
/// named; `$` only at the end of the path part; an optional query part of `name=value` pairs.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    let (path, query) = match pattern.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pattern, None),
    };
    let body = path.strip_suffix('$').unwrap_or(path);
    if body.contains('$') {
        return Err("'$' may only end the path".into());
    }
    let mut open = false;
    let mut name_len = 0;
    for c in pattern.chars() {
        match c {
            '{' if open => return Err("nested '{'".into()),
            '{' => {
                open = true;
                name_len = 0;
            }
            '}' if !open => return Err("'}' without '{'".into()),
            '}' if name_len == 0 => return Err("empty variable '{}'".into()),
            '}' => open = false,
            '/' | '?' | '&' | '=' if open => return Err("unclosed '{'".into()),
            _ if open => name_len += 1,
            _ => {}
        }
    }
    if open {
        return Err("unclosed '{'".into());
    }
    if let Some(q) = query {
        if q.is_empty() || q.split('&').any(|pair| pair.is_empty() || pair.starts_with('=')) {
            return Err("query part must be name=value pairs".into());
        }
    }
    Ok(())
}

/// A backend rule's pattern under the backend's path in the product (`/v2` + `/items`).
pub fn prefixed(path: &str, pattern: &str) -> String {
    let prefix = path.trim_end_matches('/');
    if prefix.is_empty() {
        pattern.to_string()
    } else {
        format!("{prefix}{pattern}")
    }
}

/// Whether two pricing tiers (closed ranges of a month's units; `None` = unbounded above)
/// share a unit.
pub fn overlaps(a: (i64, Option<i64>), b: (i64, Option<i64>)) -> bool {
    let a_hi = a.1.unwrap_or(i64::MAX);
    let b_hi = b.1.unwrap_or(i64::MAX);
    a.0 <= b_hi && b.0 <= a_hi
}

/// A billing address (`PUT /accounts/{id}/billing_address.json`): each part at most 255
/// characters; name, first line, city and country required.
pub const ADDRESS_FIELDS: &[&str] = &[
    "name", "address1", "address2", "city", "state", "zip", "country", "phone",
];

impl FromForm for Address {
    /// Each part as `name` or `billing_address[name]`.
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let mut parts = Vec::with_capacity(ADDRESS_FIELDS.len());
        for f in ADDRESS_FIELDS {
            let value = form
                .get(f)
                .or_else(|| form.get(&format!("billing_address[{f}]")))
                .unwrap_or("");
            if value.len() > 255 {
                return Err(Invalid::field(f, "is too long (255 characters at most)"));
            }
            parts.push(value.to_string());
        }
        for (i, required) in ["name", "address1", "city", "country"].iter().enumerate() {
            let at = [0, 1, 3, 6][i];
            if parts.get(at).is_none_or(|v| v.trim().is_empty()) {
                return Err(Invalid::field(required, "can't be blank"));
            }
        }
        let mut parts = parts.into_iter().map(Some);
        let mut next = || parts.next().flatten();
        Ok(Address {
            name: next(),
            address1: next(),
            address2: next(),
            city: next(),
            state: next(),
            zip: next(),
            country: next(),
            phone: next(),
        })
    }
}

/// How `find.json` names an account: by a user's username, e-mail or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountLookup {
    Username(String),
    Email(String),
    UserId(UserId),
}

impl FromForm for AccountLookup {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        if let Some(u) = form.get("username").filter(|v| !v.is_empty()) {
            Ok(AccountLookup::Username(u.to_string()))
        } else if let Some(e) = form.get("email").filter(|v| !v.is_empty()) {
            Ok(AccountLookup::Email(e.to_string()))
        } else if let Some(id) = form.parse("user_id")? {
            Ok(AccountLookup::UserId(id))
        } else {
            Err(Invalid::field("username", "give username, email or user_id"))
        }
    }
}

/// A message to an account (3scale Ch. 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub subject: String,
    pub body: String,
}

impl FromForm for NewMessage {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        Ok(NewMessage {
            body: form.required("body")?.to_string(),
            subject: form.get("subject").unwrap_or("").to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for ok in ["/", "/v1/{id}", "/v1/word/{word}.json$", "/search?q={q}&lang=en", "/a$"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["v1", "/a b", "/{", "/{}", "/a}", "/a$/b", "/{a/b}", "/x?", "/x?=1"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(system_name_from("My API"), "my_api");
        assert_eq!(prefixed("/", "/items"), "/items");
        assert_eq!(prefixed("/v2", "/items"), "/v2/items");
        assert_eq!(prefixed("/v2/", "/items$"), "/v2/items$");
        assert!(check_system_name("a b").is_err() && check_system_name("a/b-c_1").is_ok());
    }

    #[test]
    fn tier_overlaps() {
        assert!(!overlaps((1, Some(100)), (101, None)));
        assert!(overlaps((1, Some(100)), (100, Some(200))));
        assert!(overlaps((1, None), (5000, Some(6000))));
        assert!(!overlaps((501, None), (101, Some(500))));
    }

    #[test]
    fn addresses_name_what_is_missing() {
        let f = Form::of(&[("name", "A"), ("billing_address[address1]", "1 Road"), ("city", "T")]);
        assert!(matches!(Address::from_form(&f), Err(Invalid(e)) if e[0].field == "country"));
        let mut pairs = f.0.clone();
        pairs.push(("country".into(), "JP".into()));
        let a = Address::from_form(&Form(pairs)).unwrap();
        assert_eq!(
            (a.address1.as_deref(), a.country.as_deref()),
            (Some("1 Road"), Some("JP"))
        );
        assert_eq!(BackendVersion::parse("2"), Some(BackendVersion::AppId));
        assert_eq!(Environment::from_segment("staging"), Some(Environment::Sandbox));
    }
}
