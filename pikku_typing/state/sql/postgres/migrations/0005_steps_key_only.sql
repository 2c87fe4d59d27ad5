-- Issue 16: pikku_steps keeps one index, its primary key (run_id, key). With a second one on
-- (run_id, seq), the generic plan of a prepared step statement (psycopg prepares a statement
-- after 5 executions) could pick it on a table without statistics yet and read every step of
-- the run to find one by key: a completion cost O(steps of the run). A run's steps are read
-- in seq order by a sort (get_step_states, once per pass); an insert maintains one index.
DROP INDEX IF EXISTS pikku_steps_run_seq_idx;
