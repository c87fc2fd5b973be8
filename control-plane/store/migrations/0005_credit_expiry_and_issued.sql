-- A grant that expired: how many of its units were still unspent (and left the balance as an
-- expiry entry in the ledger). NULL: not expired yet. Set once, so expiring is idempotent.
ALTER TABLE credit_grants ADD COLUMN expired_units INTEGER;

-- Credits issued to a developer for a billing month (Apigee's), positive or negative, never
-- zero. On a prepaid account they adjust the balance at once (transaction_id: the ledger
-- entry); on a postpaid one they wait for that month's invoice (a credit line; the billing
-- run sets invoiced_at).
CREATE TABLE issued_credits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    billing_month TEXT NOT NULL,
    note TEXT,
    service_id INTEGER REFERENCES services(id) ON DELETE SET NULL,
    application_plan_id INTEGER REFERENCES application_plans(id) ON DELETE SET NULL,
    transaction_id INTEGER,
    invoiced_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX issued_credits_by_account ON issued_credits (account_id, billing_month);
