-- Billing (SPEC §6): contracts' plan history, invoices, their line items, payment
-- transactions, gap-free friendly-id counters, the billing run's record and its lock, and the
-- account's payment method (the gateway's references only: never card data).

-- Every plan a contract has been on, with the plan's fees as they were when the contract moved
-- to it: any month can be billed from these facts, whatever the plans have become since.
-- contract_type: application | service (subscription) | account. A row covers the days
-- [starts_on, ends_on); ends_on NULL: still on this plan. trial_ends_on: the first day billed
-- (kept across plan changes: upgrades don't reset a trial).
CREATE TABLE contract_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contract_type TEXT NOT NULL,
    contract_id INTEGER NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    service_id INTEGER,
    plan_id INTEGER NOT NULL,
    plan_name TEXT NOT NULL,
    setup_fee TEXT NOT NULL,
    cost_per_month TEXT NOT NULL,
    trial_ends_on TEXT NOT NULL,
    starts_on TEXT NOT NULL,
    ends_on TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX contract_plans_by_account ON contract_plans (account_id, id);
CREATE INDEX contract_plans_by_contract ON contract_plans (contract_type, contract_id, ends_on);

CREATE TABLE invoices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    friendly_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    -- The billing month, YYYY-MM.
    period TEXT NOT NULL,
    -- background (the billing run) or manual (an admin); the run never touches manual ones.
    creation_type TEXT NOT NULL,
    currency TEXT NOT NULL,
    -- Frozen when the invoice is issued: VAT and both parties' addresses as they were (JSON).
    vat_rate TEXT,
    vat_code TEXT,
    buyer TEXT,
    issuer TEXT,
    -- The day it was finalized (issuing waits a few days after it for the admin's review).
    finalized_at TEXT,
    issued_on TEXT,
    due_on TEXT,
    paid_at TEXT,
    -- Failed charge attempts so far, and the day of the last attempt (retries are 3 days apart).
    charging_retries_count INTEGER NOT NULL DEFAULT 0,
    last_charged_on TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX invoices_by_account ON invoices (account_id, period);
CREATE INDEX invoices_by_state ON invoices (state, period);

-- Amounts keep 4 decimals (TEXT, exact). billing_key: what the billing run billed with this
-- line (e.g. `application:12:fee:2026-11`); unique, so running a date twice bills once.
CREATE TABLE line_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id INTEGER NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    quantity TEXT NOT NULL,
    cost TEXT NOT NULL,
    type TEXT NOT NULL,
    metric_id INTEGER,
    contract_type TEXT,
    contract_id INTEGER,
    plan_id INTEGER,
    billing_key TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE INDEX line_items_by_invoice ON line_items (invoice_id);

-- Every charge attempt, successful or not.
CREATE TABLE payment_transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_id INTEGER NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    success INTEGER NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    gateway TEXT NOT NULL,
    reference TEXT,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX payment_transactions_by_invoice ON payment_transactions (invoice_id);

-- The last friendly-id number used per scope (`2026-11` monthly, `2026` yearly), bumped in the
-- transaction that creates the invoice: numbers are unique and without gaps.
CREATE TABLE invoice_counters (
    scope TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);

-- Dates the billing run has completed (for the record; the run's effects are idempotent by
-- themselves) and the lease that lets only one replica run the daily schedule.
CREATE TABLE billing_runs (
    date TEXT PRIMARY KEY,
    accounts INTEGER NOT NULL,
    changes INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The account's payment method at the gateway: customer and payment-method references, last 4
-- digits and expiry month (YYYY-MM), as 3scale keeps them.
ALTER TABLE accounts ADD COLUMN credit_card_token TEXT;
ALTER TABLE accounts ADD COLUMN payment_method_ref TEXT;
ALTER TABLE accounts ADD COLUMN credit_card_partial_number TEXT;
ALTER TABLE accounts ADD COLUMN credit_card_expires_on TEXT;
