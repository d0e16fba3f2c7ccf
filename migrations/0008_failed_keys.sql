-- Strict routes park a key behind its earliest failed event. The claim asked
-- events_key_failed for it, once per candidate event and in every partition:
-- with 90 days kept, that look-up cost 39 us of Postgres time per delivered
-- event on a strict route and delivery ran 43% slower (bench/README.md).
-- delivery_failed_keys holds the failed keyed events themselves, one small
-- unpartitioned table: the record adds an event that fails and removes it when
-- a replay delivers it or leaves it to be retried, and retention removes the
-- rows of the days it drops.
--
-- On an existing log the rows are copied from events_key_failed, which this
-- migration then drops: its one reader is gone.
CREATE TABLE delivery_failed_keys (
    position    bigint      PRIMARY KEY,
    ingested_at timestamptz NOT NULL,
    source      text        NOT NULL,
    key         text        NOT NULL
);
CREATE INDEX delivery_failed_keys_key ON delivery_failed_keys (source, key, position);
INSERT INTO delivery_failed_keys (position, ingested_at, source, key)
SELECT position, ingested_at, source, key
  FROM events
 WHERE key IS NOT NULL AND outcome = 'failed';
DROP INDEX events_key_failed;
