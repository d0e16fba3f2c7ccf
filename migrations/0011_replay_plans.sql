-- Saved replay plans: what a dry run selected, frozen, so that the replay an
-- operator starts runs exactly the events they reviewed. A plan keeps its
-- request (the ReplayRequest as protobuf JSON, so that every field is
-- carried), its counts by decision, and its events in chunks of about 10,000:
-- parallel arrays of log keys (ingested_at, position) and decisions, in window
-- order within a chunk once sorted. A chunk holds only events ingested before
-- until_us (microseconds since the epoch) and after every earlier chunk's, so
-- that a reader finds where a cursor falls without opening the arrays.
-- Decisions are codes: 0 deliver, 1 already_delivered, 2 found_downstream,
-- 3 outcome_not_selected, 4 no_route, 5 held_by_key. An expired plan keeps its
-- row (a start is refused as expired, not unknown); its chunks are dropped.
CREATE TABLE replay_plans (
    id          text        PRIMARY KEY,
    request     jsonb       NOT NULL,
    counts      jsonb       NOT NULL DEFAULT '{}',  -- events by decision name
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX replay_plans_expiry ON replay_plans (expires_at);

CREATE TABLE replay_plan_events (
    plan_id     text        NOT NULL,
    chunk       bigint      NOT NULL,
    until_us    bigint      NOT NULL,
    ingested_at timestamptz[] NOT NULL,
    positions   bigint[]    NOT NULL,
    decisions   smallint[]  NOT NULL,
    PRIMARY KEY (plan_id, chunk)
);
-- Kept uncompressed (about 18 bytes an event): compressing the arrays costs
-- several times the rest of a save.
ALTER TABLE replay_plan_events
    ALTER COLUMN ingested_at SET STORAGE EXTERNAL,
    ALTER COLUMN positions SET STORAGE EXTERNAL,
    ALTER COLUMN decisions SET STORAGE EXTERNAL;

-- A replay of a plan: its events come from the plan, not the window.
ALTER TABLE replays
    ADD COLUMN plan_id            text,
    ADD COLUMN changed_since_plan bigint NOT NULL DEFAULT 0;
