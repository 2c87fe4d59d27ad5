-- SPEC section 9: every run records the structural hash of its workflow when it starts
-- (WorkflowRun.version, from the generated workflow_meta.json; NULL for older runs).
ALTER TABLE pikku_runs ADD COLUMN version text;
