-- Catalog: services, metrics, mapping rules, proxy settings and configs, plans, accounts,
-- applications, access tokens. Money is TEXT (exact decimals), times are RFC 3339 TEXT in UTC,
-- booleans are 0/1: the same SQL then serves SQLite and PostgreSQL.

-- The provider (the API owner running Tollgate): one row, its settings as a JSON document.
CREATE TABLE provider_account (
    id BIGINT PRIMARY KEY,
    org_name TEXT NOT NULL,
    settings TEXT NOT NULL,
    default_account_plan_id BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE provider_users (
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT REFERENCES provider_users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    permission TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE services (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    backend_version TEXT NOT NULL DEFAULT '1',
    state TEXT NOT NULL DEFAULT 'incomplete',
    service_token TEXT NOT NULL UNIQUE,
    default_application_plan_id BIGINT,
    default_service_plan_id BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE backend_apis (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    private_endpoint TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE backend_usages (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    backend_id BIGINT NOT NULL REFERENCES backend_apis(id) ON DELETE CASCADE,
    path TEXT NOT NULL DEFAULT '/',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, backend_id)
);

-- Metrics and methods of a service or of a backend (exactly one owner); methods have a parent.
CREATE TABLE metrics (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT REFERENCES services(id) ON DELETE CASCADE,
    backend_id BIGINT REFERENCES backend_apis(id) ON DELETE CASCADE,
    parent_id BIGINT REFERENCES metrics(id) ON DELETE CASCADE,
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
    service_id BIGINT PRIMARY KEY REFERENCES services(id) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE mapping_rules (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT REFERENCES services(id) ON DELETE CASCADE,
    backend_id BIGINT REFERENCES backend_apis(id) ON DELETE CASCADE,
    metric_id BIGINT NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    http_method TEXT NOT NULL,
    pattern TEXT NOT NULL,
    delta BIGINT NOT NULL DEFAULT 1,
    position BIGINT NOT NULL DEFAULT 0,
    last BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE proxy_configs (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    version BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (service_id, environment, version)
);

CREATE TABLE application_plans (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required BIGINT NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days BIGINT NOT NULL DEFAULT 0,
    -- A plan customized for one application: a copy that no longer follows its original.
    custom BIGINT NOT NULL DEFAULT 0,
    original_id BIGINT REFERENCES application_plans(id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, system_name)
);

CREATE TABLE usage_limits (
    id BIGSERIAL PRIMARY KEY,
    plan_id BIGINT NOT NULL REFERENCES application_plans(id) ON DELETE CASCADE,
    metric_id BIGINT NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    period TEXT NOT NULL,
    value BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (plan_id, metric_id, period)
);

CREATE TABLE pricing_rules (
    id BIGSERIAL PRIMARY KEY,
    plan_id BIGINT NOT NULL REFERENCES application_plans(id) ON DELETE CASCADE,
    metric_id BIGINT NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    min BIGINT NOT NULL,
    max BIGINT,
    cost_per_unit TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE account_plans (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required BIGINT NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days BIGINT NOT NULL DEFAULT 0,
    custom BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE service_plans (
    id BIGSERIAL PRIMARY KEY,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    system_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'hidden',
    approval_required BIGINT NOT NULL DEFAULT 0,
    setup_fee TEXT NOT NULL DEFAULT '0',
    cost_per_month TEXT NOT NULL DEFAULT '0',
    trial_period_days BIGINT NOT NULL DEFAULT 0,
    custom BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (service_id, system_name)
);

CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    org_name TEXT NOT NULL,
    plan_id BIGINT REFERENCES account_plans(id),
    vat_code TEXT,
    vat_rate TEXT NOT NULL DEFAULT '0',
    billing_type TEXT NOT NULL DEFAULT 'postpaid',
    monthly_billing_enabled BIGINT NOT NULL DEFAULT 1,
    monthly_charging_enabled BIGINT NOT NULL DEFAULT 1,
    -- name, address1, address2, city, state, zip, country, phone (JSON)
    billing_address TEXT,
    state TEXT NOT NULL DEFAULT 'approved',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Messages sent to a developer account (delivery is the notifications' work).
CREATE TABLE messages (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    subject TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    email TEXT UNIQUE,
    role TEXT NOT NULL DEFAULT 'member',
    state TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE applications (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    plan_id BIGINT NOT NULL REFERENCES application_plans(id),
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
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    plan_id BIGINT NOT NULL REFERENCES service_plans(id),
    state TEXT NOT NULL DEFAULT 'live',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (account_id, service_id)
);

CREATE TABLE application_keys (
    id BIGSERIAL PRIMARY KEY,
    application_id BIGINT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (application_id, value)
);
