-- Issue 16: a step's insert no longer takes a row lock on its run. The foreign key checked
-- every insert with SELECT ... FOR KEY SHARE on the run (a lock written to the run's row,
-- and its WAL). Every insert of a step now reads its run in the same statement (INSERT ...
-- SELECT ... FROM pikku_runs WHERE id = ...): no step is inserted for a run that does not
-- exist. Runs are never deleted by pikku; deleting one by hand still deletes its steps (this
-- trigger, as ON DELETE CASCADE did), except a step inserted by a pass of that run while the
-- delete runs (delete a run that is not running).
ALTER TABLE pikku_steps DROP CONSTRAINT IF EXISTS pikku_steps_run_id_fkey;
CREATE OR REPLACE FUNCTION pikku_delete_run_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pikku_steps WHERE run_id = OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER pikku_runs_delete_steps AFTER DELETE ON pikku_runs
    FOR EACH ROW EXECUTE FUNCTION pikku_delete_run_steps();
