-- Diff and compensate. A job of the replays table has a kind: a replay
-- redelivers its events, a diff compares each with the downstream's record,
-- a compensate job applies a compensation plan (its plan_id).
--
-- A compensation plan has the id of the diff job that fills it in; its state
-- is not stored but follows from its jobs' states. It keeps the window and
-- sources of its diff, the upstream sequence holes found when the diff
-- started (holes, a JSON array of {source, first, last}), and once an apply
-- starts, that job's id (from then on its actions are frozen). An expired
-- plan keeps its rows: an apply is refused as expired, not unknown.
--
-- An entry is one event of the window as the diff saw it: its log key
-- (ingested_at, position), identity, class and action (the names of
-- server/model/compensation.h), the log's outcome then, and the
-- downstream's record (NULL id: it held none); result says what applying
-- did. A diff resumed after a crash replaces the entries it writes again.
ALTER TABLE replays
    ADD COLUMN kind text NOT NULL DEFAULT 'replay'
        CHECK (kind IN ('replay', 'diff', 'compensate'));

CREATE TABLE compensation_plans (
    id           text        PRIMARY KEY,
    window_from  timestamptz NOT NULL,
    window_to    timestamptz NOT NULL,
    sources      text[]      NOT NULL DEFAULT '{}',  -- empty: every routed source
    holes        jsonb       NOT NULL DEFAULT '[]',
    apply_job_id text,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX compensation_plans_created ON compensation_plans (created_at);

CREATE TABLE compensation_entries (
    plan_id           text        NOT NULL REFERENCES compensation_plans (id) ON DELETE CASCADE,
    position          bigint      NOT NULL,
    ingested_at       timestamptz NOT NULL,
    source            text        NOT NULL,
    event_id          text        NOT NULL,
    class             text        NOT NULL
        CHECK (class IN ('in_sync', 'missing_downstream', 'unrecorded', 'diverged',
                         'undelivered')),
    action            text        NOT NULL
        CHECK (action IN ('none', 'create', 'record', 'keep', 'overwrite')),
    log_outcome       text        NOT NULL,
    record_id         text,
    record_version    text,
    record_updated_at timestamptz,
    detail            text        NOT NULL DEFAULT '',
    result            text        NOT NULL DEFAULT 'pending'
        CHECK (result IN ('pending', 'done', 'left', 'changed_since_diff', 'failed')),
    PRIMARY KEY (plan_id, position)
);
-- A plan's entries in window order: every class (the apply job, a listing),
-- or one class (review, a change of a class's action).
CREATE INDEX compensation_entries_order ON compensation_entries (plan_id, ingested_at, position);
CREATE INDEX compensation_entries_class
    ON compensation_entries (plan_id, class, ingested_at, position);
