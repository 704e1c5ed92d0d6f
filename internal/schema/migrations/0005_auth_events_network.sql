-- The network and country each event came from (ingest.geo MMDB files; 0 and '' when unknown),
-- for detectors that compare where a key is used.
ALTER TABLE auth_events ADD COLUMN IF NOT EXISTS asn UInt32 CODEC(T64, ZSTD(1)) AFTER ip;

ALTER TABLE auth_events ADD COLUMN IF NOT EXISTS as_org LowCardinality(String) CODEC(ZSTD(1)) AFTER asn;

ALTER TABLE auth_events ADD COLUMN IF NOT EXISTS country LowCardinality(String) CODEC(ZSTD(1)) AFTER as_org;
