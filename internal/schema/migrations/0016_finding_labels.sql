-- A finding's labels beyond its identity columns (the rotation step of a spike, the signal of a
-- leak, ...) and its display fields, in order, as JSON [{"name":..,"value":..}]: what a detector
-- says about its finding in words, so that notifications and actions never decode its evidence.
-- Empty for findings stored before this migration.
ALTER TABLE findings ADD COLUMN IF NOT EXISTS labels Map(LowCardinality(String), String);
ALTER TABLE findings ADD COLUMN IF NOT EXISTS fields String CODEC(ZSTD(3));
