-- keymint initial schema (PostgreSQL). Times are Unix milliseconds (UTC);
-- ids are prefixed ULIDs. Kept in step with ../sqlite/0001_initial.sql.

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    endpoint        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    source_ip       TEXT,
    user_agent      TEXT,
    request_id      TEXT,
    path            TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BYTEA NOT NULL,
    signature_valid BIGINT,
    status          TEXT NOT NULL,
    event_type      TEXT,
    event_id        TEXT,
    order_id        TEXT,
    error           TEXT,
    license_id      TEXT,
    processed_at    BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_received ON deliveries (received_at);
CREATE INDEX deliveries_endpoint_received ON deliveries (endpoint, received_at);
CREATE INDEX deliveries_status_received ON deliveries (status, received_at);
CREATE INDEX deliveries_order ON deliveries (order_id);

CREATE TABLE processed_events (
    endpoint     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (endpoint, event_id)
);

CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE licenses (
    id            TEXT PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    product       TEXT NOT NULL,
    tier          TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    source        TEXT NOT NULL,
    order_id      TEXT,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    token         TEXT NOT NULL,
    kid           TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT,
    max_machines  BIGINT,
    entitlements  TEXT NOT NULL,
    amount_cents  BIGINT,
    currency      TEXT,
    test          BIGINT NOT NULL DEFAULT 0,
    notes         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT licenses_source_order UNIQUE (source, order_id)
);
CREATE INDEX licenses_email ON licenses (email);
CREATE INDEX licenses_product_status ON licenses (product, status);

CREATE TABLE license_events (
    id          TEXT PRIMARY KEY,
    license_id  TEXT NOT NULL REFERENCES licenses (id),
    at          BIGINT NOT NULL,
    action      TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    delivery_id TEXT
);
CREATE INDEX license_events_license ON license_events (license_id, at);

CREATE TABLE outbox (
    id                  TEXT PRIMARY KEY,
    license_id          TEXT NOT NULL REFERENCES licenses (id),
    kind                TEXT NOT NULL,
    dedupe_key          TEXT NOT NULL UNIQUE,
    to_email            TEXT NOT NULL,
    status              TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    lease_until         BIGINT,
    last_error          TEXT,
    provider_message_id TEXT,
    created_at          BIGINT NOT NULL,
    sent_at             BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
