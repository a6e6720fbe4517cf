-- The licensing API: machines a license is activated on. Kept in step
-- with ../sqlite/0007_machines.sql.

-- One row per activated machine. The program's fingerprint is never
-- stored: only SHA-256 over the license key and the fingerprint, so the
-- same machine on two licenses gives two unrelated values
-- (docs/licensing-api.md, "Machines"). The unique key makes activation
-- idempotent; the seat limit is checked under the license's write lock
-- (docs/architecture.md, "Seats").
CREATE TABLE machines (
    id               TEXT PRIMARY KEY,
    license_id       TEXT NOT NULL REFERENCES licenses (id),
    fingerprint_hash TEXT NOT NULL,
    name             TEXT,
    platform         TEXT,
    hostname         TEXT,
    app_version      TEXT,
    activated_at     BIGINT NOT NULL,
    last_seen_at     BIGINT NOT NULL,
    activated_by     TEXT NOT NULL,
    CONSTRAINT machines_license_fingerprint UNIQUE (license_id, fingerprint_hash)
);

-- A validation finds a license's subscription by the license.
CREATE INDEX subscriptions_license ON subscriptions (license_id);
