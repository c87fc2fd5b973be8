-- The event log the notifications work delivers from: what happened, to which account, with
-- its details as JSON text. Written in the same transaction as the change it reports.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX events_undelivered ON events (delivered_at, id);
