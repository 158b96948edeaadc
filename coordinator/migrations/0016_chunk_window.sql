-- A run's chunks go out to the fleet a window at a time: a chunk is released when it is
-- published, by the planning (released_by NULL) or by the loaded chunk whose place it took.
-- Chunks planned before the window existed were all published when planned.
ALTER TABLE control.chunks
    ADD COLUMN released_at timestamptz DEFAULT now(),
    ADD COLUMN released_by integer;
ALTER TABLE control.chunks ALTER COLUMN released_at DROP DEFAULT;

CREATE INDEX chunks_waiting ON control.chunks (run_id, seq)
    WHERE released_at IS NULL AND status = 'pending';
