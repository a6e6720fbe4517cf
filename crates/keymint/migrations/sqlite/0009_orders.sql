-- Orders: checkouts keymint started itself (docs/checkout.md). The row is
-- committed pending_payment before the provider is called, and its id is
-- the idempotency key the provider gets; only a webhook or the reconciler
-- makes it paid, failed or expired.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,
    product         TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    status          TEXT NOT NULL,
    email           TEXT,
    -- The client's Idempotency-Key, and a digest of what it asked, so a
    -- key reused for another request is refused.
    idempotency_key TEXT UNIQUE,
    request_digest  TEXT NOT NULL,
    -- A retried request without a key finds its pending order by this
    -- (product, email and what was asked).
    match_key       TEXT,
    -- For trial = first_time: the product and email, unique among live
    -- orders, so two racing checkouts cannot both start a trial.
    first_trial     TEXT,
    trial_days      INTEGER,
    consent_terms   TEXT,
    consent_at      INTEGER,
    consent_ip      TEXT,
    success_url     TEXT,
    cancel_url      TEXT,
    provider_ref    TEXT,
    checkout_url    TEXT,
    client_secret   TEXT,
    license_id      TEXT REFERENCES licenses (id),
    error           TEXT,
    source_ip       TEXT,
    -- When the reconciler last read it from the provider: it takes the
    -- least recently read first, so open checkouts cannot starve the rest.
    checked_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX orders_status_created ON orders (status, created_at);
CREATE INDEX orders_status_checked ON orders (status, checked_at);
CREATE UNIQUE INDEX orders_provider_ref ON orders (endpoint, provider_ref);
-- One pending order per request without a key.
CREATE UNIQUE INDEX orders_pending_match ON orders (match_key)
    WHERE status = 'pending_payment';
-- One trial per buyer email and product among live orders (trial = first_time).
CREATE UNIQUE INDEX orders_one_trial ON orders (first_trial)
    WHERE status IN ('pending_payment', 'paid');
CREATE INDEX orders_email ON orders (email);

-- What happened to an order, in order.
CREATE TABLE order_events (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    at          INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    cause       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    delivery_id TEXT,
    detail      TEXT
);
CREATE INDEX order_events_order ON order_events (order_id, at);
