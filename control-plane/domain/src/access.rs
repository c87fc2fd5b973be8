//! Who may do what (3scale §3, §6): access tokens carry scopes and a read-only or read-write
//! permission; provider users are admins (everything) or members, limited to some sections of
//! the admin portal and optionally to some services. Every route and screen asks the same
//! question of a [`Principal`]: [`Principal::allows`].

use crate::ids::{ProviderUserId, ServiceId, TokenId};

/// What an access token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    AccountManagement,
    Analytics,
    Finance,
    Stats,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::AccountManagement, Scope::Analytics, Scope::Finance, Scope::Stats];

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AccountManagement => "account_management",
            Scope::Analytics => "analytics",
            Scope::Finance => "finance",
            Scope::Stats => "stats",
        }
    }

    /// Whether a token with this scope may use what `wanted` guards: `analytics` and 3scale's
    /// `stats` are one scope under two names.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted
            || matches!(
                (self, wanted),
                (Scope::Analytics, Scope::Stats) | (Scope::Stats, Scope::Analytics)
            )
    }

    /// The admin-portal sections this scope reaches; a member needs one of them to get a
    /// token with it.
    pub fn sections(self) -> &'static [Section] {
        match self {
            Scope::AccountManagement => &[Section::Partners, Section::Plans, Section::Settings],
            Scope::Analytics | Scope::Stats => &[Section::Monitoring],
            Scope::Finance => &[Section::Finance],
        }
    }
}

/// Reading or writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// A token's permission: read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPermission {
    ReadOnly,
    ReadWrite,
}

impl TokenPermission {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ro" => Some(Self::ReadOnly),
            "rw" => Some(Self::ReadWrite),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "ro",
            Self::ReadWrite => "rw",
        }
    }
}

/// The admin-portal area an endpoint or screen belongs to; members reach only the sections
/// they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// Developer accounts, their users and applications.
    Partners,
    /// Services, their integration (metrics, mapping rules, proxy) and plans.
    Plans,
    /// Analytics.
    Monitoring,
    /// Billing.
    Finance,
    /// Provider settings and users: admins only.
    Settings,
    /// The developer portal's content.
    Portal,
    /// Policies (kept for 3scale's clients).
    PolicyRegistry,
    /// What any token holder may use (their own tokens, the provider's name).
    Any,
}

impl Section {
    /// The sections a member may be given, as 3scale names them.
    pub const GRANTABLE: [Section; 7] = [
        Section::Portal,
        Section::Finance,
        Section::Settings,
        Section::Partners,
        Section::Monitoring,
        Section::Plans,
        Section::PolicyRegistry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Partners => "partners",
            Section::Plans => "plans",
            Section::Monitoring => "monitoring",
            Section::Finance => "finance",
            Section::Settings => "settings",
            Section::Portal => "portal",
            Section::PolicyRegistry => "policy_registry",
            Section::Any => "",
        }
    }

    pub fn parse(s: &str) -> Option<Section> {
        Section::GRANTABLE.into_iter().find(|x| x.as_str() == s)
    }
}

/// What a route or a screen requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission {
    pub scope: Scope,
    pub access: Access,
    pub section: Section,
}

impl Permission {
    pub const fn new(scope: Scope, access: Access, section: Section) -> Self {
        Permission { scope, access, section }
    }
}

/// A member's limits; admins (and the bootstrap token) have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub sections: Vec<Section>,
    /// `None`: every service.
    pub services: Option<Vec<ServiceId>>,
}

/// Who is calling: their token, and their limits if they are a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: TokenId,
    /// The provider user owning the token; `None` for the bootstrap token (acts as an admin).
    pub user_id: Option<ProviderUserId>,
    pub scopes: Vec<Scope>,
    pub permission: TokenPermission,
    pub member: Option<Member>,
}

impl Principal {
    /// Whether the token grants `scope` with `access`.
    pub fn token_allows(&self, scope: Scope, access: Access) -> bool {
        self.scopes.iter().any(|s| s.grants(scope))
            && (access == Access::Read || self.permission == TokenPermission::ReadWrite)
    }

    pub fn may_enter(&self, section: Section) -> bool {
        match (&self.member, section) {
            (None, _) | (_, Section::Any) => true,
            (Some(_), Section::Settings) => false,
            (Some(m), s) => m.sections.contains(&s),
        }
    }

    /// The whole question a route or screen asks.
    pub fn allows(&self, p: Permission) -> bool {
        self.token_allows(p.scope, p.access) && self.may_enter(p.section)
    }

    /// The services a member is limited to; `None`: every service.
    pub fn services(&self) -> Option<&[ServiceId]> {
        self.member.as_ref().and_then(|m| m.services.as_deref())
    }

    pub fn may_see_service(&self, service: ServiceId) -> bool {
        self.services().is_none_or(|ids| ids.contains(&service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(permission: TokenPermission, member: Option<Member>) -> Principal {
        Principal {
            token_id: TokenId::new(1),
            user_id: None,
            scopes: vec![Scope::AccountManagement],
            permission,
            member,
        }
    }

    #[test]
    fn permissions() {
        let ro = principal(TokenPermission::ReadOnly, None);
        assert!(ro.token_allows(Scope::AccountManagement, Access::Read));
        assert!(!ro.token_allows(Scope::AccountManagement, Access::Write));
        assert!(!ro.token_allows(Scope::Finance, Access::Read));
        let rw = principal(TokenPermission::ReadWrite, None);
        assert!(rw.allows(Permission::new(
            Scope::AccountManagement,
            Access::Write,
            Section::Settings
        )));
        let member = principal(
            TokenPermission::ReadWrite,
            Some(Member {
                sections: vec![Section::Plans],
                services: Some(vec![ServiceId::new(7)]),
            }),
        );
        assert!(member.allows(Permission::new(Scope::AccountManagement, Access::Write, Section::Plans)));
        assert!(!member.may_enter(Section::Settings), "settings are admins' only");
        assert!(!member.may_enter(Section::Partners));
        assert!(member.may_see_service(ServiceId::new(7)) && !member.may_see_service(ServiceId::new(8)));
    }
}
