-- Notifications: the event log becomes a transactional outbox that a sender delivers from.
--
-- An event keeps what happened (`kind`, the account, its JSON `payload`), gains a stable id
-- receivers dedupe on (`uuid`), who caused it (`actor`: provider, buyer or system), and the
-- service it concerns (members are told only of their services). `routed_at` is set when the
-- sender has turned it into deliveries (one per destination, in the same transaction).
ALTER TABLE events RENAME COLUMN delivered_at TO routed_at;
ALTER TABLE events ADD COLUMN uuid TEXT;
ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'system';
ALTER TABLE events ADD COLUMN service_id INTEGER;
UPDATE events SET routed_at = created_at WHERE routed_at IS NULL;
CREATE UNIQUE INDEX events_uuid ON events (uuid);

-- Where events go over HTTP. `kind` is `threescale` for 3scale's one webhook per provider
-- (XML bodies; its sixteen switches are `event_types`) or `json` for Tollgate's endpoints.
-- Secrets are `whsec_…`; after a rotation the previous one also signs until it expires.
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 0,
    provider_actions INTEGER NOT NULL DEFAULT 0,
    push_application_content_type INTEGER NOT NULL DEFAULT 1,
    event_types TEXT NOT NULL DEFAULT '[]',
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One delivery per event and destination (`endpoint:<id>` or `email:<address>`): the unique
-- key makes routing idempotent, so two senders routing one event make one delivery each.
-- Times the sender compares are epoch milliseconds.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    endpoint_id INTEGER REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    email TEXT,
    template TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    UNIQUE (event_id, destination)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_ms);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);

-- Every attempt, for the delivery log.
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    response_excerpt TEXT NOT NULL DEFAULT '',
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);

-- 3scale's webhook failures (`/admin/api/webhooks/failures`): deliveries that gave up.
CREATE TABLE webhook_failures (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    error TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX webhook_failures_time ON webhook_failures (time);

-- Usage limit alerts (3scale's levels): one per application, limit, period and level; seen
-- by the provider (`web_provider`) and/or the developer (`web_buyer`), each with its own state.
ALTER TABLE services ADD COLUMN notification_settings TEXT;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    metric_id INTEGER NOT NULL,
    period TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    level INTEGER NOT NULL,
    utilization TEXT NOT NULL,
    message TEXT NOT NULL,
    provider_web INTEGER NOT NULL,
    buyer_web INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'unread',
    buyer_state TEXT NOT NULL DEFAULT 'unread',
    timestamp TEXT NOT NULL,
    UNIQUE (application_id, metric_id, period, period_start, level)
);
CREATE INDEX alerts_service ON alerts (service_id, id);

-- Provider users' e-mail notification preferences (3scale Ch. 4.3): the ones they turned off
-- or on, as JSON; what is not there is on.
ALTER TABLE provider_users ADD COLUMN notification_preferences TEXT NOT NULL DEFAULT '{}';
