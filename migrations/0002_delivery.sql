-- Delivery: claims and the indexes the dispatcher's claim query needs.
-- A claim (claimed_by, claim_expires_at) says which worker (daemon process or
-- replay runner) is delivering the event right now. It is released when the
-- attempt is recorded; a crashed owner's claim expires and the event becomes
-- claimable again. ALTER TABLE and CREATE INDEX on the partitioned parent
-- apply to every partition, present and future.

ALTER TABLE events
    ADD COLUMN claimed_by       text,
    ADD COLUMN claim_expires_at timestamptz;

-- Due work: the dispatcher scans events_undelivered (next_attempt_at,
-- position) from 0001; the claim rules, not the scan order, keep a key's
-- events in log order.

-- Per-key ordering: "how many earlier undelivered (or, for strict routes,
-- failed) events has this key?" is one short probe into this index.
CREATE INDEX events_key_order ON events (source, key, position)
    WHERE key IS NOT NULL AND outcome IN ('pending', 'retrying', 'failed');

-- No index on claimed_by: every claim and release would have to maintain it.
-- The heartbeat and the release at stop find an owner's claims among the
-- undelivered events through events_undelivered.

-- The trace reads an event's attempts through delivery_attempts' primary key
-- (event_ingested_at, event_position, attempt): no extra index.
