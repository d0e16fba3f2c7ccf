-- Durable replay jobs and the audit trail of every control action.
-- A job is owned by one daemon at a time through a lease (owner, lease_until);
-- another daemon takes it over when the lease expires. The cursor is the last
-- event, in window order (ingested_at, position), that the job has finished.

CREATE TABLE replays (
    id                 text        PRIMARY KEY,
    -- Client-chosen idempotency id of StartReplay: the same id is the same job.
    request_id         text        UNIQUE,
    state              text        NOT NULL
        CHECK (state IN ('pending', 'running', 'cancelling', 'cancelled', 'completed', 'failed')),
    window_from        timestamptz NOT NULL,
    window_to          timestamptz NOT NULL CHECK (window_to > window_from),
    sources            text[]      NOT NULL DEFAULT '{}',  -- empty = every source
    outcomes           text[]      NOT NULL,
    include_succeeded  boolean     NOT NULL DEFAULT false,
    verify_downstream  boolean     NOT NULL DEFAULT false,
    rate               double precision NOT NULL,
    burst              integer     NOT NULL,
    allow_high_rate    boolean     NOT NULL DEFAULT false,
    reason             text        NOT NULL DEFAULT '',
    created_by         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    total              bigint      NOT NULL DEFAULT 0,
    processed          bigint      NOT NULL DEFAULT 0,
    delivered          bigint      NOT NULL DEFAULT 0,
    skipped            bigint      NOT NULL DEFAULT 0,
    failed             bigint      NOT NULL DEFAULT 0,
    current_rate       double precision NOT NULL DEFAULT 0,
    cursor_ingested_at timestamptz,
    cursor_position    bigint,
    last_error         text        NOT NULL DEFAULT '',
    owner              text,
    lease_until        timestamptz,
    cancel_reason      text        NOT NULL DEFAULT ''
);

-- Jobs a runner may pick up or is running.
CREATE INDEX replays_active ON replays (created_at)
    WHERE state IN ('pending', 'running', 'cancelling');
CREATE INDEX replays_history ON replays (created_at DESC);

CREATE TABLE replay_audit (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,   -- the principal's name, or replayd:<instance>
    action     text        NOT NULL,   -- start, cancel, resume, complete, fail, ...
    replay_id  text,
    reason     text        NOT NULL DEFAULT '',
    detail     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX replay_audit_replay ON replay_audit (replay_id, id);
