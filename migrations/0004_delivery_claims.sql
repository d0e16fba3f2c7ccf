-- Claims move out of the event row into a table of their own.
--
-- A claim says which worker (a daemon's dispatcher or a replay runner) is
-- delivering an event right now. Held in the event row (0002), every claim
-- wrote a new version of a wide row and an entry in each of its indexes, and
-- the record of the attempt wrote the row again. Here a claim is one narrow
-- row inserted when the event is claimed and deleted when its attempt is
-- recorded, so the event row is written once per attempt.
--
-- position is unique across the whole log (events_position_seq), so it alone
-- names the event; ingested_at locates its partition. A claim whose
-- expires_at has passed belongs to a crashed or stalled owner and may be
-- taken over.
--
-- Upgrading: daemons from before this migration read the dropped columns and
-- stop working once it has run, so stop the old replicas (Kubernetes:
-- `strategy: Recreate`, or scale to zero) before starting the new ones.
-- Claims held at that moment are gone with the columns: their events are
-- claimable again at once, and the sinks' check-then-act step keeps a
-- re-delivery from creating a second record downstream.

CREATE TABLE delivery_claims (
    position    bigint      PRIMARY KEY,
    ingested_at timestamptz NOT NULL,
    owner       text        NOT NULL,
    expires_at  timestamptz NOT NULL
) WITH (
    -- Every delivered event leaves a dead row behind: vacuum the table
    -- after every few thousand of them rather than after 20% of its tiny
    -- live size has turned over a hundred times.
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 5000
);

-- No index on owner: the heartbeat (every lease/3) and the release at stop
-- scan the table, which holds only the claims in flight and the dead rows
-- since the last vacuum; every claim and release would maintain the index.

ALTER TABLE events
    DROP COLUMN claimed_by,
    DROP COLUMN claim_expires_at;
