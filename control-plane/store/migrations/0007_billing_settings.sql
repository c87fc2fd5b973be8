-- The provider's billing settings (SPEC §6; 3scale's billing settings page): one row.
CREATE TABLE billing_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    mode TEXT NOT NULL,
    currency TEXT NOT NULL,
    charging_enabled INTEGER NOT NULL,
    invoice_footnote TEXT,
    vat_zero_text TEXT,
    numbering TEXT NOT NULL,
    payment_gateway TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
