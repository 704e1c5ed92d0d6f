-- Messages that could not become an event: where they were, why, and a redacted excerpt.
CREATE TABLE IF NOT EXISTS dead_letters
(
    received_at DateTime64(3, 'UTC')   DEFAULT now64(3) CODEC(DoubleDelta, ZSTD(1)),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64                  CODEC(Delta, ZSTD(1)),
    reason      LowCardinality(String),
    error       String                 CODEC(ZSTD(1)),
    excerpt     String                 CODEC(ZSTD(3)),
    size        UInt32
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (topic, partition, offset)
TTL toDateTime(received_at) + toIntervalDay({{.DeadLettersDays}})
SETTINGS non_replicated_deduplication_window = 10000;
