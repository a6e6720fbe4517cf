-- A delivery's body size and SHA-256 (hex). A delivery that fails
-- authentication keeps only the first 4 KiB of its body; these say what
-- the whole body was (docs/webhooks.md, "Rejected deliveries").
ALTER TABLE deliveries ADD COLUMN body_size INTEGER;
ALTER TABLE deliveries ADD COLUMN body_sha256 TEXT;
