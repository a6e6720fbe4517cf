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
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX portal_links_expires ON portal_links (expires_at);

-- Every request for a sign-in link, by the SHA-256 of the address asked
-- for (never the address): `links_per_hour` counts them, and each request
-- writes one row whether or not the address bought, so the answer takes
-- as long either way.
CREATE TABLE portal_requests (
    id         TEXT PRIMARY KEY,
    email_hash TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX portal_requests_email ON portal_requests (email_hash, at);
CREATE INDEX portal_requests_at ON portal_requests (at);

-- A signed-in buyer's browser session: the cookie holds a random secret,
-- the row its SHA-256 and the email it may see.
CREATE TABLE portal_sessions (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);

-- An email about no license (a portal sign-in link) has `license_id`
-- NULL and `link_id` set. SQLite cannot drop a NOT NULL, so the outbox is
-- copied into a table that allows it.
CREATE TABLE outbox_new (
    id                  TEXT PRIMARY KEY,
    license_id          TEXT REFERENCES licenses (id),
    link_id             TEXT REFERENCES portal_links (id),
    kind                TEXT NOT NULL,
    dedupe_key          TEXT NOT NULL UNIQUE,
    to_email            TEXT NOT NULL,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_until         INTEGER,
    last_error          TEXT,
    provider_message_id TEXT,
    created_at          INTEGER NOT NULL,
    sent_at             INTEGER,
    CHECK ((license_id IS NULL) <> (link_id IS NULL))
);
INSERT INTO outbox_new (id, license_id, kind, dedupe_key, to_email, status, attempts,
    next_attempt_at, lease_until, last_error, provider_message_id, created_at, sent_at)
SELECT id, license_id, kind, dedupe_key, to_email, status, attempts,
    next_attempt_at, lease_until, last_error, provider_message_id, created_at, sent_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_license ON outbox (license_id, created_at);
