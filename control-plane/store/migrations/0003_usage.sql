-- Usage tables: hour by hour, per application (and so per service), copied from the hour
-- counters by the usage flush. Rows hold absolute values with the time they were read, so a
-- flush repeated or raced by another replica changes nothing: the later reading wins.
-- Billing (variable costs) and analytics read these, never the live counters.
CREATE TABLE usage_hourly (
    application_id INTEGER NOT NULL,
    service_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    hour_start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    observed_us INTEGER NOT NULL,
    PRIMARY KEY (application_id, metric_id, hour_start)
);
CREATE INDEX usage_hourly_by_service ON usage_hourly (service_id, metric_id, hour_start);

-- Response codes from log[code]: the exact code ('404') and its class ('4xx').
CREATE TABLE response_codes_hourly (
    application_id INTEGER NOT NULL,
    service_id INTEGER NOT NULL,
    code TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    observed_us INTEGER NOT NULL,
    PRIMARY KEY (application_id, code, hour_start)
);
CREATE INDEX response_codes_hourly_by_service ON response_codes_hourly (service_id, code, hour_start);

-- Report batch ids seen in the last 24 hours: a batch sent again is acknowledged, not counted.
CREATE TABLE report_batches (
    service_id INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (service_id, batch_id)
);
