-- Subscriptions, their event history, and the provider ids that lead to a
-- license or a customer. Kept in step with ../postgres/0002_subscriptions.sql.

-- Every provider id that names a license's order (payment intent, charge,
-- invoice, order, subscription), so refunds and disputes find it.
CREATE TABLE license_refs (
    source     TEXT NOT NULL,
    ref        TEXT NOT NULL,
    license_id TEXT NOT NULL REFERENCES licenses (id),
    PRIMARY KEY (source, ref)
);
CREATE INDEX license_refs_license ON license_refs (license_id);

-- A provider's customer id -> keymint customer.
CREATE TABLE customer_refs (
    source      TEXT NOT NULL,
    ref         TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    PRIMARY KEY (source, ref)
);

CREATE TABLE subscriptions (
    id                   TEXT PRIMARY KEY,
    source               TEXT NOT NULL,
    subscription_id      TEXT NOT NULL,
    status               TEXT NOT NULL,
    trial_end            INTEGER,
    current_period_end   INTEGER,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    last_event_at        INTEGER NOT NULL,
    product              TEXT,
    customer_id          TEXT REFERENCES customers (id),
    customer_ref         TEXT,
    license_id           TEXT REFERENCES licenses (id),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    UNIQUE (source, subscription_id)
);
CREATE INDEX subscriptions_status_end ON subscriptions (status, current_period_end);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- Every event applied to (or refused by) a subscription.
CREATE TABLE subscription_events (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    at              INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    result          TEXT NOT NULL,
    from_status     TEXT,
    to_status       TEXT NOT NULL,
    period_end      INTEGER,
    actor           TEXT NOT NULL,
    delivery_id     TEXT
);
CREATE INDEX subscription_events_sub ON subscription_events (subscription_id, received_at);
