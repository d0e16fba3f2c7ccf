-- Replays that stop safely: a job may be paused (by an operator, or by its
-- circuit breaker when the downstream keeps failing) and resumed later. A
-- paused job keeps its cursor and its hold on the window; nobody holds its
-- lease. It also keeps the events that failed in the burst that paused it
-- (retry_events, a JSON array of {position, ingested_at_us, source, key}),
-- which are retried first on resume. held_by_key counts the events of strict
-- keys held behind an earlier undelivered event. The breaker settings are
-- the job's own (the configured defaults or the request's overrides).
ALTER TABLE replays DROP CONSTRAINT replays_state_check;
ALTER TABLE replays ADD CONSTRAINT replays_state_check
    CHECK (state IN ('pending', 'running', 'paused', 'cancelling', 'cancelled', 'completed',
                     'failed'));
ALTER TABLE replays
    ADD COLUMN held_by_key                  bigint           NOT NULL DEFAULT 0,
    ADD COLUMN retry_events                 jsonb            NOT NULL DEFAULT '[]',
    ADD COLUMN breaker_consecutive_failures integer          NOT NULL DEFAULT 0,
    ADD COLUMN breaker_failure_ratio        double precision NOT NULL DEFAULT 0,
    ADD COLUMN breaker_window               integer          NOT NULL DEFAULT 0;
