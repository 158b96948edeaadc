-- The profiles' statistics cover only the columns plans use. ANALYZE of a column list never
-- resets the table's count of rows changed since its last analysis, so a store analyzed that
-- way looked stale after every load and was analyzed again each time; with the other columns'
-- statistics target at 0, a whole-table ANALYZE samples just these and resets the count.
ALTER TABLE profile_store.profiles
    ALTER COLUMN properties SET STATISTICS 0,
    ALTER COLUMN property_stamps SET STATISTICS 0,
    ALTER COLUMN created_at SET STATISTICS 0,
    ALTER COLUMN first_event_at SET STATISTICS 0,
    ALTER COLUMN last_event_at SET STATISTICS 0,
    ALTER COLUMN event_count SET STATISTICS 0,
    ALTER COLUMN source_import_id SET STATISTICS 0,
    ALTER COLUMN source_key SET STATISTICS 0,
    ALTER COLUMN source_unset SET STATISTICS 0,
    ALTER COLUMN source_names SET STATISTICS 0;
