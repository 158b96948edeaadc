-- A dry run's advice: each chunk's date-format census (by property), and why a dry run did or
-- did not take its draft import out of draft.
ALTER TABLE control.chunks ADD COLUMN date_formats jsonb;
ALTER TABLE control.runs ADD COLUMN promoted boolean, ADD COLUMN promotion text;
