-- The dispatcher reads undelivered events in log order from a cursor and
-- keeps each key's order in memory (server/delivery/key_queues.h), instead of
-- asking the database on every claim which events of a key may go next. Its
-- scan needs the undelivered events by position: this index replaces
-- (next_attempt_at, position) from 0001, whose only reader was the old claim
-- query. Due times are read with the rows and kept by the dispatcher.
DROP INDEX events_undelivered;
CREATE INDEX events_undelivered ON events (position)
    WHERE outcome IN ('pending', 'retrying');
