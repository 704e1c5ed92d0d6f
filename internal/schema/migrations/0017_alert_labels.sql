-- An alert's labels and display fields, copied from its latest finding (findings.labels and
-- findings.fields, migration 0016): what notifications show and actions read. Empty for alerts
-- stored before this migration, which are shown from their evidence.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS labels Map(LowCardinality(String), String);
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS fields String CODEC(ZSTD(3));
