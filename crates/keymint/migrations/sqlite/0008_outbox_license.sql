-- A license's emails are read by license (the admin API's license page);
-- without this index every such read scanned the whole outbox, which
-- grows by one row per email sent.
CREATE INDEX outbox_license ON outbox (license_id, created_at);
