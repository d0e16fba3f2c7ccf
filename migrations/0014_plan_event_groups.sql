-- A saved window's events are written in the same read as the dry run's
-- aggregate, grouped as that aggregate groups them: a row of
-- replay_plan_events may then hold one group of a chunk (its events of one
-- source, outcome and sequence bucket), with the group's source and outcome
-- and one decision for all its events (decision; decisions is NULL). A
-- chunk is all the rows with its number: together they hold the events of
-- its slice of time, which a reader sorts. Rows written a chunk at a time
-- (a dry run that decides per event) keep a decision per event (decisions;
-- source, outcome and decision are NULL).
ALTER TABLE replay_plan_events
    DROP CONSTRAINT replay_plan_events_pkey,
    ALTER COLUMN decisions DROP NOT NULL,
    ADD COLUMN source   text,
    ADD COLUMN outcome  text,
    ADD COLUMN decision smallint,
    ADD CONSTRAINT replay_plan_events_decided
        CHECK ((decision IS NULL) <> (decisions IS NULL));
CREATE INDEX replay_plan_events_chunk ON replay_plan_events (plan_id, chunk);
-- A group of a few hundred events (a few kB) stays in its row rather than
-- going to TOAST: one write instead of two, for most of a saved window.
ALTER TABLE replay_plan_events SET (toast_tuple_target = 8160);
