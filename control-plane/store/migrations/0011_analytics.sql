-- Analytics (3scale Part V).
--
-- The usage series counters are quarter hours now (tollgate_domain::counters::SERIES): every
-- IANA zone's offset is whole quarters, so stats are exact in Asia/Kolkata as in UTC. A row
-- stays one UTC hour — `value` is the hour's total, as billing reads it — and holds each
-- quarter's value (q0..q3) with the time it was read (o0..o3): of two readings of a quarter the
-- later wins, as for whole rows before. Rows written before this migration put the hour in q0.
ALTER TABLE usage_hourly ADD COLUMN q0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN q1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN q2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN q3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN o0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN o1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN o2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN o3 INTEGER NOT NULL DEFAULT 0;
UPDATE usage_hourly SET q0 = value, o0 = observed_us;
ALTER TABLE response_codes_hourly ADD COLUMN q0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN q1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN q2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN q3 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN o0 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN o1 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN o2 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE response_codes_hourly ADD COLUMN o3 INTEGER NOT NULL DEFAULT 0;
UPDATE response_codes_hourly SET q0 = value, o0 = observed_us;

-- Roll-ups the usage flush keeps (recomputed from the rows above for every bucket it touches,
-- so repeating a flush changes nothing): per service and hour, for a service's usage, a
-- backend's (summed over the services using it) and response codes, and per application and
-- UTC day, for top applications over a month or a year.
CREATE TABLE usage_service_hourly (
    service_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    hour_start INTEGER NOT NULL,
    q0 INTEGER NOT NULL,
    q1 INTEGER NOT NULL,
    q2 INTEGER NOT NULL,
    q3 INTEGER NOT NULL,
    PRIMARY KEY (service_id, metric_id, hour_start)
);
INSERT INTO usage_service_hourly (service_id, metric_id, hour_start, q0, q1, q2, q3)
SELECT service_id, metric_id, hour_start, SUM(q0), SUM(q1), SUM(q2), SUM(q3)
FROM usage_hourly GROUP BY service_id, metric_id, hour_start;

CREATE TABLE response_codes_service_hourly (
    service_id INTEGER NOT NULL,
    code TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    q0 INTEGER NOT NULL,
    q1 INTEGER NOT NULL,
    q2 INTEGER NOT NULL,
    q3 INTEGER NOT NULL,
    PRIMARY KEY (service_id, code, hour_start)
);
INSERT INTO response_codes_service_hourly (service_id, code, hour_start, q0, q1, q2, q3)
SELECT service_id, code, hour_start, SUM(q0), SUM(q1), SUM(q2), SUM(q3)
FROM response_codes_hourly GROUP BY service_id, code, hour_start;

CREATE TABLE usage_app_daily (
    service_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    day_start INTEGER NOT NULL,
    application_id INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (service_id, metric_id, day_start, application_id)
);
INSERT INTO usage_app_daily (service_id, metric_id, day_start, application_id, value)
SELECT service_id, metric_id, hour_start - hour_start % 86400, application_id, SUM(value)
FROM usage_hourly GROUP BY service_id, metric_id, hour_start - hour_start % 86400, application_id;

-- Integration errors (3scale Ch. 29.5): reports and authreps a service could not take, newest
-- first, at most 1000 a service (the oldest beyond are dropped as new ones come).
CREATE TABLE integration_errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX integration_errors_by_service ON integration_errors (service_id, id);

-- The provider account's key (3scale's `provider_key`): accepted as admin credentials on the
-- admin and stats APIs, shown in GET /admin/api/provider.json. Set at start when missing.
ALTER TABLE provider_account ADD COLUMN provider_key TEXT;
