-- The embedded counter store's durable copy: every counter a response counted is here before
-- the response leaves. Loaded back at start; rows past their expiry are dropped.
CREATE TABLE counter_values (
    app_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    period TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (app_id, metric_id, period, period_start)
);
