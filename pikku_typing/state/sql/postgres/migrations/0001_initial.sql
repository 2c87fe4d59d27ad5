-- pikku schema version 1: runs and steps.
CREATE TABLE pikku_runs (
    id text PRIMARY KEY,
    workflow text NOT NULL,
    status text NOT NULL,
    input text NOT NULL,
    output text,
    error jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    wake_at timestamptz,
    owner jsonb,
    cancel_requested boolean NOT NULL DEFAULT false,
    extra jsonb
);
CREATE INDEX pikku_runs_created_idx ON pikku_runs (created_at DESC, id DESC);
CREATE INDEX pikku_runs_workflow_idx ON pikku_runs (workflow, created_at DESC, id DESC);
CREATE INDEX pikku_runs_status_idx ON pikku_runs (status, created_at DESC, id DESC);
CREATE TABLE pikku_steps (
    run_id text NOT NULL REFERENCES pikku_runs (id) ON DELETE CASCADE,
    key text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    step_name text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    rpc_name text,
    data text,
    data_digest text,
    result text,
    error jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    max_attempts integer,
    attempts jsonb NOT NULL DEFAULT '[]'::jsonb,
    next_attempt_at timestamptz,
    lease_token text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    extra jsonb,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX pikku_steps_run_seq_idx ON pikku_steps (run_id, seq);
CREATE INDEX pikku_steps_active_idx ON pikku_steps (status, next_attempt_at)
    WHERE status IN ('running', 'scheduled');
