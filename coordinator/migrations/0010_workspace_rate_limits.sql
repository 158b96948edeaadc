-- A workspace's share of the stores: rows per second its loads may write, across the fleet.
ALTER TABLE control.workspaces ADD COLUMN load_rows_per_second integer
    CHECK (load_rows_per_second > 0);
