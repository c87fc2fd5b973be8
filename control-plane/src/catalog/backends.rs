//! Backends (SPEC §3.1): APIs with their own metrics, methods and mapping rules, used by
//! services (products) under a path through backend usages.

use super::resource::{aliased, field, fixed, Kind, OnCreate, Resource};

pub const BACKEND: Resource = Resource {
    name: "backend_api",
    collection: "backend_apis",
    table: "backend_apis",
    scope: &[],
    fields: &[
        field("name", Kind::Text, OnCreate::Required),
        fixed("system_name", Kind::SystemName, OnCreate::Derived),
        field("description", Kind::Text, OnCreate::Default("")),
        field("private_endpoint", Kind::Text, OnCreate::Default("")),
    ],
    unique_field: "system_name",
    transitions: &[],
};

pub const BACKEND_USAGE: Resource = Resource {
    name: "backend_usage",
    collection: "backend_usages",
    table: "backend_usages",
    scope: &["service_id"],
    fields: &[
        // 3scale takes `backend_api_id` and shows `backend_id`.
        Field {
            updatable: false,
            ..aliased("backend_id", "backend_api_id", Kind::Id, OnCreate::Required)
        },
        field("path", Kind::Text, OnCreate::Default("/")),
    ],
    unique_field: "backend_id",
    transitions: &[],
};

use super::resource::Field;
