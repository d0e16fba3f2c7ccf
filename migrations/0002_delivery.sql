-- Delivery: claims and the indexes the dispatcher's claim query needs.
-- A claim (claimed_by, claim_expires_at) says which worker (daemon process or
-- replay runner) is delivering the event right now. It is released when the
-- attempt is recorded; a crashed owner's claim expires and the event becomes
-- claimable again. ALTER TABLE and CREATE INDEX on the partitioned parent
-- apply to every partition, present and future.

ALTER TABLE events
    ADD COLUMN claimed_by       text,
    ADD COLUMN claim_expires_at timestamptz;

-- Due work in log order: the dispatcher scans this index by position.
CREATE INDEX events_undelivered_position ON events (position)
    WHERE outcome IN ('pending', 'retrying');

-- Per-key ordering: "is there an earlier undelivered (or, for strict routes,
-- failed) event of this key?" is one probe into this index.
CREATE INDEX events_key_order ON events (source, key, position)
    WHERE key IS NOT NULL AND outcome IN ('pending', 'retrying', 'failed');

-- Heartbeat and graceful release of one owner's claims.
CREATE INDEX events_claimed_by ON events (claimed_by)
    WHERE claimed_by IS NOT NULL;

-- The trace reads an event's attempts through delivery_attempts' primary key
-- (event_ingested_at, event_position, attempt): no extra index.
