-- Operator console sessions (docs/console.md): a signed-in admin token's
-- browser session. The cookie holds a random secret; the row holds only
-- its SHA-256. Revoking the token ends its sessions (they are read joined
-- to the live token), and they survive restarts and work across replicas.
CREATE TABLE console_sessions (
    id         TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES admin_tokens (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
