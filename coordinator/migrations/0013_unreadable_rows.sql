-- Source rows no run can read, found while planning: those with a NULL or infinite watermark
-- (counted by every run until they get one) and those without a key in the run's range.
ALTER TABLE control.runs
    ADD COLUMN rows_without_watermark bigint NOT NULL DEFAULT 0,
    ADD COLUMN rows_without_key       bigint NOT NULL DEFAULT 0;
