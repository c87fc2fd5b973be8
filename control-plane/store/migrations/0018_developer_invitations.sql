-- Invitations to a developer account (3scale Ch. 14): the same invitations, naming the account
-- the invitee joins; NULL is the provider's staff, as before. The invitee becomes an active
-- member of that account and signs in to the developer portal.
ALTER TABLE invitations ADD COLUMN account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE;
