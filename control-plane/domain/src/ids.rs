//! Ids, one type per kind of entity, so that an account's id cannot be passed where a service's
//! is expected. They are the database's integers; `get` hands the raw value to SQL.

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    )*};
}

ids!(
    /// A service (an API product).
    ServiceId,
    /// A backend API, used by products under a path.
    BackendId,
    /// A metric or method (of a service or a backend).
    MetricId,
    /// An application, service or account plan (the contract type says which).
    PlanId,
    /// A developer account.
    AccountId,
    /// An application of a developer account.
    ApplicationId,
    /// A user of a developer account.
    UserId,
    /// A user of the provider (admin or member).
    ProviderUserId,
    /// An access token.
    TokenId,
    /// An invoice.
    InvoiceId,
    /// A line item of an invoice.
    LineId,
    /// A credit grant.
    GrantId,
    /// A proxy configuration version's row.
    ProxyConfigId,
);

/// The provider: the one account that runs Tollgate (3scale's tenant).
pub const PROVIDER_ID: i64 = 1;
