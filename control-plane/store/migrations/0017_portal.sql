-- The developer portal's sessions: as the console's (0014), for users of developer accounts.
-- A session is kept only as the SHA-256 of its cookie, with its CSRF token; it ends at sign
-- out or after the idle time. Throttling shares sign_in_failures under its own keys.
CREATE TABLE portal_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id);
