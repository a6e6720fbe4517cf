-- Operator hardening. Kept in step with ../postgres/0006_operator_hardening.sql.

-- Which key signs is recorded here, so a running server and the CLI agree
-- on it (docs/operations.md, "Signing keys"). At most one row has
-- signing = 1; keymint chooses it at start when none has.
ALTER TABLE signing_keys ADD COLUMN signing INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX signing_keys_one_signer ON signing_keys (signing) WHERE signing = 1;

-- Admin token names are unique among live tokens, so revoking by name
-- means one token. Live duplicates made before this rule keep working:
-- all but the oldest get their id appended to the name.
UPDATE admin_tokens SET name = name || '-' || id
WHERE revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM admin_tokens older
    WHERE older.name = admin_tokens.name AND older.revoked_at IS NULL
      AND (older.created_at < admin_tokens.created_at
           OR (older.created_at = admin_tokens.created_at AND older.id < admin_tokens.id))
);
CREATE UNIQUE INDEX admin_tokens_live_name ON admin_tokens (name) WHERE revoked_at IS NULL;

-- A manual order id is checked against every other source's orders.
CREATE INDEX licenses_order ON licenses (order_id);
CREATE INDEX license_refs_ref ON license_refs (ref);
