-- Key metadata a lifecycle event may carry (contract 3.2, issue #7): the key's version, when it
-- expires and the scopes it grants. '' / NULL / [] when the event did not say; the rotation model
-- keeps, per key and field, the latest value stated by event time, so an event without them never
-- clears what an earlier one said.
ALTER TABLE key_lifecycle_events ADD COLUMN IF NOT EXISTS version String DEFAULT '' CODEC(ZSTD(1));

ALTER TABLE key_lifecycle_events ADD COLUMN IF NOT EXISTS expires_at Nullable(DateTime64(3, 'UTC'));

ALTER TABLE key_lifecycle_events ADD COLUMN IF NOT EXISTS scopes Array(LowCardinality(String)) CODEC(ZSTD(1));
