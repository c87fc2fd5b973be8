-- Prepaid credits (SPEC §7). The ledger is the truth: every grant, deduction, adjustment and
-- expiry is a row with the balance after it. The hot balance authrep enforces lives with the
-- counters (an account-owned "spent" counter limited by what the account was granted); the
-- credit flush copies what was spent into the ledger, idempotently (credit_wallets remembers
-- how much of the counter is in the ledger already).
-- Amounts are decimals as text (4 places), as everywhere money is stored.

CREATE TABLE credit_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    starter_credits TEXT NOT NULL,
    low_balance_threshold TEXT NOT NULL,
    purchase_url TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE credit_rates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    metric_id INTEGER NOT NULL REFERENCES metrics(id) ON DELETE CASCADE,
    application_plan_id INTEGER REFERENCES application_plans(id) ON DELETE CASCADE,
    credits_per_unit TEXT NOT NULL,
    upstream_cost_per_unit TEXT NOT NULL,
    rate_type TEXT,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX credit_rates_by_service ON credit_rates (service_id);

CREATE TABLE credit_grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    amount TEXT NOT NULL,
    kind TEXT NOT NULL,
    expires_at TEXT,
    note TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX credit_grants_by_account ON credit_grants (account_id);

-- Per account: the spent counter's value the ledger holds, in ten-thousandths of a credit.
CREATE TABLE credit_wallets (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    spent_units INTEGER NOT NULL,
    low_balance INTEGER NOT NULL
);

CREATE TABLE credit_transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    amount TEXT NOT NULL,
    balance_after TEXT NOT NULL,
    grant_id INTEGER,
    note TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX credit_transactions_by_account ON credit_transactions (account_id, id);
