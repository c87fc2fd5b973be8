-- Invitations to the provider's staff (3scale Ch. 3, Settings > Users > Invitations): an
-- e-mail address and a single-use token kept only as its SHA-256. The invitee opens the link,
-- picks a user name and password, and becomes an active member with no sections until an
-- admin grants some. `accepted_at` and `user_id` record the acceptance; an invitation not
-- accepted within its validity (see `tollgate_store::invitations`) no longer opens.
CREATE TABLE invitations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    accepted_at TEXT,
    user_id INTEGER REFERENCES provider_users(id) ON DELETE SET NULL
);
