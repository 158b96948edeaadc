-- The workspace error stream reads rejected rows by when they were recorded, across runs.
CREATE INDEX run_errors_by_time ON control.run_errors (created_at);
