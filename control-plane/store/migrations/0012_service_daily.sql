-- A service's usage per UTC day, kept by the usage flush beside the hourly roll-up (recomputed
-- from it for every day a flush touches): a year is 365 rows to read instead of 8,760. Stats
-- read whole days here and the hours of the days a bucket boundary cuts from the hourly tables.
CREATE TABLE usage_service_daily (
    service_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    day_start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (service_id, metric_id, day_start)
);
INSERT INTO usage_service_daily (service_id, metric_id, day_start, value)
SELECT service_id, metric_id, hour_start - hour_start % 86400, SUM(q0 + q1 + q2 + q3)
FROM usage_service_hourly GROUP BY service_id, metric_id, hour_start - hour_start % 86400;

-- An application's days, by application (the roll-up's key leads with the service, for top
-- applications).
CREATE INDEX usage_app_daily_by_application ON usage_app_daily (application_id, metric_id, day_start, value);

-- Covering indexes: what the roll-ups are recomputed from and what top applications read at a
-- month's edges (every application's hours of one day) come from the index alone, not from
-- rows scattered over the table (it is ordered by application).
DROP INDEX usage_hourly_by_service;
CREATE INDEX usage_hourly_by_service ON usage_hourly (service_id, metric_id, hour_start, application_id, q0, q1, q2, q3);
DROP INDEX response_codes_hourly_by_service;
CREATE INDEX response_codes_hourly_by_service ON response_codes_hourly (service_id, code, hour_start, application_id, q0, q1, q2, q3);
CREATE INDEX usage_app_daily_by_service ON usage_app_daily (service_id, metric_id, day_start, application_id, value);
