-- Strict routes park a key behind its earliest failed event, and the claim's
-- check (ClaimVerifySql in server/store/pg_delivery_store.cc) is the one
-- reader of events_key_order left since 0006 moved key order into the
-- dispatcher: it asks for failed events only. Pending and retrying events
-- no longer get an entry, which every keyed event paid at ingest and every
-- retry paid again.
--
-- On an existing log the new index is built from every partition while
-- writes to events wait; it holds only failed keyed events.
DROP INDEX events_key_order;
CREATE INDEX events_key_failed ON events (source, key, position)
    WHERE key IS NOT NULL AND outcome = 'failed';
