-- A deduction's detail: the usage behind it, per application and rated metric (JSON list of
-- application_id, metric_id, metric, quantity, credits), as the usage tables show it when the
-- flush records the deduction.
ALTER TABLE credit_transactions ADD COLUMN detail TEXT;

-- How much of each hour's usage (of a rated metric, by an application of a prepaid account)
-- deductions have already detailed: the next one details only what came after. Hours older
-- than a day are forgotten.
CREATE TABLE credit_attributed (
    application_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    hour_start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (application_id, metric_id, hour_start)
);
