-- Catalog: services, metrics, mapping rules, proxy settings and configs, plans, accounts,
-- applications, access tokens. Money is TEXT (exact decimals), times are RFC 3339 TEXT in UTC,
-- booleans are 0/1: the same SQL then serves SQLite and PostgreSQL.

-- The provider (the API owner running Tollgate): one row, its settings as a JSON document.
CREATE TABLE provider_account (
    id INTEGER PRIMARY KEY,
    org_name TEXT NOT NULL,
    settings TEXT NOT NULL,
    default_account_plan_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE provider_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    email TEXT UNIQUE,
    role TEXT NOT NULL DEFAULT 'member',
    state TEXT NOT NULL DEFAULT 'pending',
    allowed_sections TEXT NOT NULL DEFAULT '',
    allowed_service_ids TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE access_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES provider_users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    permission TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    backend_version TEXT NOT NULL DEFAULT '1',
    state TEXT NOT NULL DEFAULT 'incomplete',
    service_token TEXT NOT NULL UNIQUE,
    default_application_plan_id INTEGER,
    default_service_plan_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE backend_apis (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    private_endpoint TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE backend_usages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    backend_id INTEGER NOT NULL REFERENCES backend_apis(id) ON DELETE CASCADE,
    path TEXT NOT NULL DEFAULT '/',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, backend_id)
);

-- Metrics and methods of a service or of a backend (exactly one owner); methods have a parent.
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
    backend_id INTEGER REFERENCES backend_apis(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES metrics(id) ON DELETE CASCADE,
    system_name TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT 'hit',
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK ((service_id IS NULL) <> (backend_id IS NULL))
);
CREATE UNIQUE INDEX metrics_service_system_name ON metrics (service_id, system_name) WHERE service_id IS NOT NULL;
CREATE UNIQUE INDEX metrics_backend_system_name ON metrics (backend_id, system_name) WHERE backend_id IS NOT NULL;

CREATE TABLE proxies (
    service_id INTEGER PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE mapping_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
    backend_id INTEGER REFERENCES backend_apis(id) ON DELETE CASCADE,
    metric_id INTEGER NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    http_method TEXT NOT NULL,
    pattern TEXT NOT NULL,
    delta INTEGER NOT NULL DEFAULT 1,
    position INTEGER NOT NULL DEFAULT 0,
    last INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE proxy_configs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    version INTEGER NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (service_id, environment, version)
);

CREATE TABLE application_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required INTEGER NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days INTEGER NOT NULL DEFAULT 0,
    -- A plan customized for one application: a copy that no longer follows its original.
    custom INTEGER NOT NULL DEFAULT 0,
    original_id INTEGER REFERENCES application_plans(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, system_name)
);

CREATE TABLE usage_limits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id INTEGER NOT NULL REFERENCES application_plans(id) ON DELETE CASCADE,
    metric_id INTEGER NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    period TEXT NOT NULL,
    value INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (plan_id, metric_id, period)
);

CREATE TABLE pricing_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id INTEGER NOT NULL REFERENCES application_plans(id) ON DELETE CASCADE,
    metric_id INTEGER NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    min INTEGER NOT NULL,
    max INTEGER,
    cost_per_unit TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE account_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required INTEGER NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days INTEGER NOT NULL DEFAULT 0,
    custom INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE service_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required INTEGER NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days INTEGER NOT NULL DEFAULT 0,
    custom INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, system_name)
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_name TEXT NOT NULL,
    plan_id INTEGER REFERENCES account_plans(id),
    vat_code TEXT,
    vat_rate TEXT NOT NULL DEFAULT '0',
    billing_type TEXT NOT NULL DEFAULT 'postpaid',
    monthly_billing_enabled INTEGER NOT NULL DEFAULT 1,
    monthly_charging_enabled INTEGER NOT NULL DEFAULT 1,
    -- name, address1, address2, city, state, zip, country, phone (JSON)
    billing_address TEXT,
    state TEXT NOT NULL DEFAULT 'approved',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Messages sent to a developer account (delivery is the notifications' work).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    email TEXT UNIQUE,
    role TEXT NOT NULL DEFAULT 'member',
    state TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE applications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    plan_id INTEGER NOT NULL REFERENCES application_plans(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'live',
    user_key TEXT,
    application_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, user_key),
    UNIQUE (service_id, application_id)
);

CREATE TABLE service_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    plan_id INTEGER NOT NULL REFERENCES service_plans(id),
    state TEXT NOT NULL DEFAULT 'live',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (account_id, service_id)
);

CREATE TABLE application_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (application_id, value)
);
