-- The buyer portal (docs/portal.md).
--
-- A sign-in link: the emailed token is never stored, only its SHA-256;
-- the outbox worker derives the token again from the link's id with the
-- signing key named by `kid` (which lives outside the database), so the
-- email can be sent (and retried) without the token ever being stored.
CREATE TABLE portal_links (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT NOT NULL,
    kid        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX portal_links_expires ON portal_links (expires_at);

-- Every request for a sign-in link, by the SHA-256 of the address asked
-- for (never the address): `links_per_hour` counts them, and each request
-- writes one row whether or not the address bought, so the answer takes
-- as long either way.
CREATE TABLE portal_requests (
    id         TEXT PRIMARY KEY,
    email_hash TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX portal_requests_email ON portal_requests (email_hash, at);
CREATE INDEX portal_requests_at ON portal_requests (at);

-- A signed-in buyer's browser session: the cookie holds a random secret,
-- the row its SHA-256 and the email it may see.
CREATE TABLE portal_sessions (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

-- An email about no license (a portal sign-in link) has `license_id`
-- NULL and `link_id` set.
ALTER TABLE outbox ALTER COLUMN license_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN link_id TEXT REFERENCES portal_links (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_about_one
    CHECK ((license_id IS NULL) <> (link_id IS NULL));
