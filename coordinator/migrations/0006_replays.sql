-- Replay runs read a window of rows again without moving the watermark.
ALTER TABLE control.runs
    ADD COLUMN replay_from  timestamptz,
    ADD COLUMN replay_until timestamptz;
