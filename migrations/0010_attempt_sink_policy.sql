-- Replays that select within their window and may deliver elsewhere.
--
-- A replay may narrow its window to some keys, types or event ids (each an
-- empty array for every value) and name a configured sink and a retry policy
-- of its own (sink '' and NULL retry fields: the route's). They are kept
-- with the job, so a resumed or taken-over job selects and delivers the same.
--
-- Each attempt records the sink it went to and the retry policy that decided
-- what followed it (retry_base_us and retry_cap_us in microseconds). Rows
-- written without them read as sink '' and no policy.
ALTER TABLE replays
    ADD COLUMN keys               text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN types              text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN event_ids          text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN sink               text    NOT NULL DEFAULT '',
    ADD COLUMN retry_max_attempts integer,
    ADD COLUMN retry_base_us      bigint,
    ADD COLUMN retry_cap_us       bigint;
ALTER TABLE delivery_attempts
    ADD COLUMN sink               text    NOT NULL DEFAULT '',
    ADD COLUMN retry_max_attempts integer,
    ADD COLUMN retry_base_us      bigint,
    ADD COLUMN retry_cap_us       bigint;
