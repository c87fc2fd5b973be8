-- The console (the provider's staff) and, later, the developer portal sign in with passwords.
--
-- `password` holds an argon2id hash in PHC form (`$argon2id$v=19$…`), never the password; it
-- is never shown. A session is a random value in an HttpOnly cookie, kept here only as its
-- SHA-256 (`id_hash`), with the CSRF token every form of the session carries; it ends at sign
-- out, or after `TOLLGATE_CONSOLE_IDLE_MINUTES` without a request (`last_seen_at`).
-- `sign_in_failures` counts wrong passwords per user name and per client address, to throttle
-- guessing: `locked_until` says when the next try is allowed.
ALTER TABLE provider_users ADD COLUMN password TEXT;
ALTER TABLE users ADD COLUMN password TEXT;

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES provider_users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    locked_until TEXT
);
