-- The event log: one row per upstream event, partitioned by ingest day (UTC).
-- Partitions (events_pYYYYMMDD, delivery_attempts_pYYYYMMDD) are created ahead
-- of time and on demand by the daemon, and dropped by the retention setting.

-- Postgres cannot enforce a unique index across the partitions of a table
-- partitioned by time, so (source, event_id) uniqueness lives in this plain
-- table. Ingest inserts the key first; only new keys reach the log.
CREATE TABLE event_keys (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    ingested_at timestamptz NOT NULL,
    PRIMARY KEY (source, event_id)
);

-- The log position: ingest order across the whole log.
CREATE SEQUENCE events_position_seq;

CREATE TABLE events (
    position          bigint      NOT NULL DEFAULT nextval('events_position_seq'),
    source            text        NOT NULL,
    event_id          text        NOT NULL,
    sequence          bigint,
    key               text,
    type              text,
    occurred_at       timestamptz,
    ingested_at       timestamptz NOT NULL,
    processed_at      timestamptz,
    outcome           text        NOT NULL DEFAULT 'pending'
        CHECK (outcome IN ('pending', 'retrying', 'succeeded', 'already_processed', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    next_attempt_at   timestamptz,
    target_record_id  text,
    payload           jsonb       NOT NULL,
    PRIMARY KEY (ingested_at, position)
) PARTITION BY RANGE (ingested_at);

-- Work still to deliver, in log order.
CREATE INDEX events_undelivered ON events (next_attempt_at, position)
    WHERE outcome IN ('pending', 'retrying');
-- Lookup by upstream id (trace, check-then-act).
CREATE INDEX events_source_event_id ON events (source, event_id);
-- Missing-event detection from upstream sequence numbers.
CREATE INDEX events_source_sequence ON events (source, sequence)
    WHERE sequence IS NOT NULL;

-- Every delivery attempt of every event, partitioned like the log so that
-- retention drops both together.
CREATE TABLE delivery_attempts (
    event_position    bigint      NOT NULL,
    event_ingested_at timestamptz NOT NULL,
    attempt           integer     NOT NULL,
    trigger           text        NOT NULL,  -- live, retry, replay:<id>
    route             text        NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       double precision NOT NULL,
    http_status       integer,
    error             text,
    outcome           text        NOT NULL,
    record_id         text,
    PRIMARY KEY (event_ingested_at, event_position, attempt)
) PARTITION BY RANGE (event_ingested_at);
