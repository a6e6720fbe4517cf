-- Operator-initiated refunds. The row is written pending before the
-- provider is called (its id is the Idempotency-Key); only a webhook or the
-- reconciler makes it succeeded or failed.
CREATE TABLE refunds (
    id                 TEXT PRIMARY KEY,
    license_id         TEXT NOT NULL REFERENCES licenses (id),
    endpoint           TEXT NOT NULL,
    payment_ref        TEXT NOT NULL,
    amount_cents       INTEGER,
    status             TEXT NOT NULL,
    provider_refund_id TEXT UNIQUE,
    reason             TEXT,
    error              TEXT,
    requested_by       TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
-- At most one pending refund per license.
CREATE UNIQUE INDEX refunds_one_pending ON refunds (license_id) WHERE status = 'pending';
CREATE INDEX refunds_status_created ON refunds (status, created_at);
