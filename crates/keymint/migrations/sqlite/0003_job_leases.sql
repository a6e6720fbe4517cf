-- Singleton background jobs (sweeper, retention, reconciler): the replica
-- holding a job's unexpired lease runs it; the others skip that tick.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
