-- SPEC section 8: child runs record their parent; events sent to a run are kept until a
-- wait_for_event step consumes them (first unconsumed of a name, in send order).
ALTER TABLE pikku_runs ADD COLUMN parent_run_id text;
CREATE INDEX pikku_runs_parent_idx ON pikku_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE TABLE pikku_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL REFERENCES pikku_runs (id) ON DELETE CASCADE,
    name text NOT NULL,
    payload text NOT NULL,
    sent_at timestamptz NOT NULL,
    consumed_by text,
    consumed_at timestamptz
);
CREATE INDEX pikku_events_unconsumed_idx ON pikku_events (run_id, name, seq)
    WHERE consumed_by IS NULL;
CREATE INDEX pikku_events_consumer_idx ON pikku_events (run_id, consumed_by)
    WHERE consumed_by IS NOT NULL;
