-- The statements of the PostgreSQL state store (pikku_typing/state/postgres.py).
-- Each starts with a "-- name: <name>" line; parameters are psycopg's %(name)s.
-- Step transitions are ONE guarded UPDATE ... RETURNING each: the WHERE clause is the guard
-- (a claim only matches a pending/scheduled step that is due; a completion or failure only
-- matches while the claim token still holds the running attempt).

-- name: create_version_table
CREATE TABLE IF NOT EXISTS pikku_schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: current_version
SELECT coalesce(max(version), 0) AS version FROM pikku_schema_version

-- name: record_version
INSERT INTO pikku_schema_version (version) VALUES (%(version)s)

-- name: run_exists
SELECT 1 AS found FROM pikku_runs WHERE id = %(run_id)s

-- name: insert_run
INSERT INTO pikku_runs (id, workflow, status, input, created_at, updated_at, parent_run_id, version)
VALUES (%(run_id)s, %(workflow)s, 'running', %(input)s, %(now)s, %(now)s, %(parent_run_id)s, %(version)s)
ON CONFLICT (id) DO NOTHING
RETURNING *

-- name: get_run
SELECT * FROM pikku_runs WHERE id = %(run_id)s

-- name: update_run
-- Every field has a set_<field> flag: false keeps the stored value (RunChanges' UNSET).
-- A run that settles is announced on the channel pikku_settled (payload: the run id; sent at
-- commit) for the result() waiters of every process (LISTEN/NOTIFY instead of polling).
-- postgres.py derives complete_then_update_run from this text: the same update carrying a
-- pass's held-back step result (complete_step as the CTE done, parameters prefixed done_).
WITH updated AS (
UPDATE pikku_runs SET
    updated_at = %(now)s,
    status = CASE WHEN %(set_status)s THEN %(status)s::text ELSE status END,
    output = CASE WHEN %(set_output)s THEN %(output)s::text ELSE output END,
    error = CASE WHEN %(set_error)s THEN %(error)s::jsonb ELSE error END,
    wake_at = CASE WHEN %(set_wake_at)s THEN %(wake_at)s::timestamptz ELSE wake_at END,
    owner = CASE WHEN %(set_owner)s THEN %(owner)s::jsonb ELSE owner END,
    cancel_requested = CASE WHEN %(set_cancel_requested)s
        THEN %(cancel_requested)s::boolean ELSE cancel_requested END
WHERE id = %(run_id)s
    AND (%(expect)s::text[] IS NULL OR status = ANY(%(expect)s::text[]))
RETURNING *
)
SELECT updated.*, CASE WHEN %(set_status)s
        AND updated.status IN ('completed', 'failed', 'cancelled')
    THEN pg_notify('pikku_settled', updated.id) END AS settled_notify
FROM updated

-- name: get_step_states
SELECT s.* FROM pikku_runs r LEFT JOIN pikku_steps s ON s.run_id = r.id
WHERE r.id = %(run_id)s
ORDER BY s.seq

-- name: get_step
SELECT s.* FROM pikku_runs r LEFT JOIN pikku_steps s ON s.run_id = r.id AND s.key = %(key)s
WHERE r.id = %(run_id)s

-- name: insert_step
-- A row (inserted = true) when the step was inserted: the caller has its values already, so
-- nothing else is sent back; none when a step with that key exists (or the run does not: the
-- step is inserted only for a run that exists, read in the same statement).
INSERT INTO pikku_steps (
    run_id, key, step_name, kind, status, rpc_name, data, data_digest, result, error,
    attempt_count, max_attempts, attempts, next_attempt_at, lease_token, lease_expires_at,
    created_at, updated_at, started_at, finished_at, extra
)
SELECT
    %(run_id)s, %(key)s, %(step_name)s, %(kind)s, %(status)s, %(rpc_name)s, %(data)s,
    %(data_digest)s, %(result)s, %(error)s::jsonb, %(attempt_count)s, %(max_attempts)s,
    %(attempts)s::jsonb, %(next_attempt_at)s, %(lease_token)s, %(lease_expires_at)s,
    %(created_at)s, %(updated_at)s, %(started_at)s, %(finished_at)s, %(extra)s::jsonb
FROM pikku_runs WHERE id = %(run_id)s
ON CONFLICT (run_id, key) DO NOTHING
RETURNING true AS inserted

-- name: insert_step_at_boundary
-- A step boundary and a new step's insert in ONE statement: the step is inserted only when the
-- run has no cancel request and is not settled. One row (goes_on, inserted) when the run
-- exists, none when it does not; goes_on false: the pass stops (nothing inserted); inserted
-- false while goes_on: a step with that key exists (never overwritten). The statement sets
-- its own commit: asynchronous (an attempt's start, bookkeeping) when the asynchronous
-- parameter is true, else the session's synchronous_commit (set_config local to the
-- statement's transaction, read when it commits), so it can run on any session.
-- postgres.py derives complete_then_insert_step_at_boundary from this text: the same insert
-- carrying a pass's held-back step result (complete_step as the CTE done, parameters prefixed
-- done_), committed synchronously, inserting only when the completion applied.
WITH commit_mode AS (
    SELECT set_config('synchronous_commit',
        CASE WHEN %(asynchronous)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true)
), run AS (
    SELECT NOT cancel_requested AND status NOT IN ('completed', 'failed', 'cancelled') AS goes_on
    FROM pikku_runs, commit_mode WHERE id = %(run_id)s
), inserted AS (
    INSERT INTO pikku_steps (
        run_id, key, step_name, kind, status, rpc_name, data, data_digest, result, error,
        attempt_count, max_attempts, attempts, next_attempt_at, lease_token, lease_expires_at,
        created_at, updated_at, started_at, finished_at, extra
    )
    SELECT
        %(run_id)s, %(key)s, %(step_name)s, %(kind)s, %(status)s, %(rpc_name)s, %(data)s,
        %(data_digest)s, %(result)s, %(error)s::jsonb, %(attempt_count)s, %(max_attempts)s,
        %(attempts)s::jsonb, %(next_attempt_at)s, %(lease_token)s, %(lease_expires_at)s,
        %(created_at)s, %(updated_at)s, %(started_at)s, %(finished_at)s, %(extra)s::jsonb
    FROM run WHERE goes_on
    ON CONFLICT (run_id, key) DO NOTHING
    RETURNING true
)
SELECT goes_on, EXISTS (SELECT 1 FROM inserted) AS inserted FROM run

-- name: schedule_step
UPDATE pikku_steps SET status = 'scheduled', next_attempt_at = %(at)s, updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'pending'
RETURNING *

-- name: claim_step
-- The attempt parameter is the new attempt (without its number) as a JSON object. With
-- run_goes_on (claim_due_step: a step job's first move), only while the run has no cancel
-- request and is not settled.
UPDATE pikku_steps SET
    status = 'running',
    attempt_count = attempt_count + 1,
    attempts = attempts || jsonb_build_array(
        jsonb_build_object('number', attempt_count + 1) || %(attempt)s::jsonb),
    next_attempt_at = NULL,
    lease_token = %(token)s,
    lease_expires_at = %(lease)s,
    started_at = coalesce(started_at, %(now)s),
    updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s
    AND status IN ('pending', 'scheduled')
    AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
    AND (NOT %(run_goes_on)s OR EXISTS (
        SELECT 1 FROM pikku_runs
        WHERE id = %(run_id)s AND NOT cancel_requested
            AND status NOT IN ('completed', 'failed', 'cancelled')))
RETURNING *

-- name: heartbeat_step
UPDATE pikku_steps SET
    attempts = jsonb_set(attempts, '{-1,lease_expires_at}', to_jsonb(%(lease_iso)s::text)),
    lease_expires_at = %(lease)s,
    updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'running'
    AND lease_token = %(token)s AND attempts->-1->>'status' = 'running'
RETURNING *

-- name: complete_step
-- The caller only needs whether it applied (a row) or not: nothing else is sent back.
-- With a token: only while that token holds the running attempt. Without (sleeps): unless the
-- step already succeeded; a running attempt, if any, is marked succeeded.
UPDATE pikku_steps SET
    attempts = CASE WHEN status = 'running' AND attempts->-1->>'status' = 'running'
        THEN jsonb_set(jsonb_set(attempts, '{-1,status}', '"succeeded"'),
                       '{-1,finished_at}', to_jsonb(%(now_iso)s::text))
        ELSE attempts END,
    status = 'succeeded',
    result = %(result)s,
    error = NULL,
    next_attempt_at = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    finished_at = %(now)s,
    updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s
    AND CASE WHEN %(token)s::text IS NULL THEN status <> 'succeeded'
        ELSE status = 'running' AND lease_token = %(token)s::text
            AND attempts->-1->>'status' = 'running' END
RETURNING true AS done

-- name: fail_step_attempt
-- With a retry time the step is scheduled for it; without, the step fails. Without a token,
-- whatever attempt is running ends (abandoning a dead holder).
UPDATE pikku_steps SET
    attempts = jsonb_set(jsonb_set(jsonb_set(attempts,
        '{-1,status}', '"failed"'),
        '{-1,finished_at}', to_jsonb(%(now_iso)s::text)),
        '{-1,error}', %(error)s::jsonb),
    error = %(error)s::jsonb,
    status = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN 'failed' ELSE 'scheduled' END,
    next_attempt_at = %(retry_at)s::timestamptz,
    finished_at = CASE WHEN %(retry_at)s::timestamptz IS NULL THEN %(now)s ELSE finished_at END,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s
    AND status = 'running' AND attempts->-1->>'status' = 'running'
    AND (%(token)s::text IS NULL OR lease_token = %(token)s::text)
RETURNING *

-- name: reset_step
UPDATE pikku_steps SET
    status = 'scheduled',
    error = NULL,
    next_attempt_at = %(at)s,
    finished_at = NULL,
    max_attempts = attempt_count + %(attempts)s,
    updated_at = %(now)s
WHERE run_id = %(run_id)s AND key = %(key)s AND status = 'failed'
RETURNING *

-- name: send_event
-- One statement: the run's row is locked (FOR UPDATE waits for a concurrent status change and
-- reads its result), the event is inserted only if the run exists and is not settled, and a
-- suspended run becomes due now (wake_at) so a poller of due runs wakes it.
WITH run AS (
    SELECT id, status FROM pikku_runs WHERE id = %(run_id)s FOR UPDATE
), event AS (
    INSERT INTO pikku_events (run_id, name, payload, sent_at)
    SELECT id, %(name)s, %(payload)s, %(now)s FROM run
    WHERE status NOT IN ('completed', 'failed', 'cancelled')
    RETURNING *
), woken AS (
    UPDATE pikku_runs SET wake_at = %(now)s, updated_at = %(now)s
    WHERE id = %(run_id)s AND status = 'suspended'
        AND (wake_at IS NULL OR wake_at > %(now)s)
        AND EXISTS (SELECT 1 FROM event)
)
SELECT * FROM event

-- name: consume_event
-- The event this step key consumed already (idempotent by key), else the first unconsumed
-- event of that name, marked consumed by the key. SKIP LOCKED: a concurrent consumer takes
-- the next event instead of finding none.
WITH mine AS (
    SELECT * FROM pikku_events
    WHERE run_id = %(run_id)s AND consumed_by = %(key)s
    ORDER BY seq LIMIT 1
), pick AS (
    SELECT seq FROM pikku_events
    WHERE run_id = %(run_id)s AND name = %(name)s AND consumed_by IS NULL
        AND NOT EXISTS (SELECT 1 FROM mine)
    ORDER BY seq LIMIT 1
    FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE pikku_events e SET consumed_by = %(key)s, consumed_at = %(now)s
    FROM pick WHERE e.seq = pick.seq AND e.consumed_by IS NULL
    RETURNING e.*
)
SELECT * FROM mine UNION ALL SELECT * FROM taken

-- name: list_events
SELECT e.* FROM pikku_runs r LEFT JOIN pikku_events e ON e.run_id = r.id
WHERE r.id = %(run_id)s
ORDER BY e.seq

-- name: all_runs
SELECT * FROM pikku_runs ORDER BY id

-- name: all_steps
SELECT * FROM pikku_steps ORDER BY run_id, key

-- name: all_events
SELECT * FROM pikku_events ORDER BY seq

-- name: get_step_and_run
-- A step job's one read: the step's columns and the run's (prefixed r_). No row: no such run;
-- a NULL key: no such step.
SELECT s.*, r.id AS r_id, r.workflow AS r_workflow, r.status AS r_status, r.input AS r_input,
    r.output AS r_output, r.error AS r_error, r.created_at AS r_created_at,
    r.updated_at AS r_updated_at, r.wake_at AS r_wake_at, r.owner AS r_owner,
    r.cancel_requested AS r_cancel_requested, r.parent_run_id AS r_parent_run_id,
    r.version AS r_version
FROM pikku_runs r LEFT JOIN pikku_steps s ON s.run_id = r.id AND s.key = %(key)s
WHERE r.id = %(run_id)s
