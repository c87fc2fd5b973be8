//! Settings › Users › a member's permissions (3scale Ch. 3): the sections they may use and the
//! products they may see, as checkboxes on the user's page. The same patch as
//! `PUT /admin/api/users/{id}/permissions.json` (the checks, the unknown-service refusal); an
//! admin holds everything, so the form is a member's only.

use super::session::Refused;
use crate::state::AppState;
use tollgate_domain::access::Section;
use tollgate_domain::catalog::Role;
use tollgate_domain::form::Page;
use tollgate_domain::ids::ProviderUserId;
use tollgate_store::catalog::crud as store;
use tollgate_store::catalog::provider;
use tollgate_store::catalog::services;

/// What a section lets a member do, as 3scale's user form says it.
fn section_label(s: Section) -> &'static str {
    match s {
        Section::Partners => "Developer accounts — applications, users, messages (Audience)",
        Section::Plans => "Products — integration, metrics, mapping rules and plans",
        Section::Monitoring => "Analytics",
        Section::Finance => "Billing",
        Section::Settings => "Settings",
        Section::Portal => "Developer portal",
        Section::PolicyRegistry => "Policy registry",
        Section::Any => "",
    }
}

/// The permissions form on a member's page.
pub struct PermissionsForm {
    pub action: String,
    /// Section name, label, held.
    pub sections: Vec<(&'static str, &'static str, bool)>,
    /// Service id, name, seen.
    pub services: Vec<(i64, String, bool)>,
    /// Why the last change was refused.
    pub error: String,
}

/// The form for user `id`, if they are a member (an admin holds every section and service).
pub async fn permissions_form(app: &AppState, id: i64, error: String) -> Result<Option<PermissionsForm>, Refused> {
    let user = ProviderUserId::new(id);
    let mut conn = app.db.pool.acquire().await.map_err(tollgate_store::StoreError::from)?;
    let held = provider::permissions(&mut conn, user).await?;
    drop(conn);
    if held.role != Role::Member {
        return Ok(None);
    }
    let seen = held.services.unwrap_or_default();
    let all = store::list(&app.db, &services::SERVICES, &[], None, Page::FIRST).await?;
    Ok(Some(PermissionsForm {
        action: format!("/console/users/{id}/permissions"),
        sections: Section::GRANTABLE
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    section_label(*s),
                    held.sections.iter().any(|h| h == s.as_str()),
                )
            })
            .collect(),
        services: all
            .iter()
            .map(|s| {
                let name = s.text("name").unwrap_or_default().to_string();
                (s.id(), name, seen.iter().any(|x| x.get() == s.id()))
            })
            .collect(),
        error,
    }))
}
