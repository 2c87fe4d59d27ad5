-- Issue 16: no index of pikku_steps covers a column that a step's transitions change (status,
-- next_attempt_at, lease, result...): completing, failing, claiming or heartbeating a step is
-- a HOT update (no new index entries, less WAL). pikku_steps_active_idx (status,
-- next_attempt_at) served no statement of the store.
DROP INDEX IF EXISTS pikku_steps_active_idx;
