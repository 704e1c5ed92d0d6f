-- Where each table's rows came from, so that a restarted or rebalanced consumer skips what is
-- already stored: per table, topic and partition, the highest Kafka offset stored. Batches are
-- stored in offset order and each table's insert is atomic, so every offset up to that one is in.
ALTER TABLE auth_events ADD COLUMN IF NOT EXISTS src_topic LowCardinality(String) AFTER gateway;

ALTER TABLE key_lifecycle_events ADD COLUMN IF NOT EXISTS src_topic LowCardinality(String) AFTER reason;

CREATE TABLE IF NOT EXISTS ingest_progress
(
    table      LowCardinality(String),
    topic      LowCardinality(String),
    partition  Int32,
    max_offset SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (table, topic, partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_progress_auth_events_mv TO ingest_progress AS
SELECT 'auth_events' AS table, src_topic AS topic, src_partition AS partition, max(src_offset) AS max_offset
FROM auth_events
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_progress_key_lifecycle_events_mv TO ingest_progress AS
SELECT 'key_lifecycle_events' AS table, src_topic AS topic, src_partition AS partition, max(src_offset) AS max_offset
FROM key_lifecycle_events
GROUP BY src_topic, src_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_progress_dead_letters_mv TO ingest_progress AS
SELECT 'dead_letters' AS table, topic, partition, max(offset) AS max_offset
FROM dead_letters
GROUP BY topic, partition;
