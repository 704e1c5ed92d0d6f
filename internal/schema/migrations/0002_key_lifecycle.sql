-- Every key lifecycle event (contract 3.2) as it arrived, by event time: the rotation history.
CREATE TABLE IF NOT EXISTS key_lifecycle_events
(
    ts            DateTime64(3, 'UTC')            CODEC(DoubleDelta, ZSTD(1)),
    type          Enum8('key.created' = 1, 'key.rotation_started' = 2, 'key.retired' = 3, 'key.revoked' = 4),
    key_id        String                          CODEC(ZSTD(1)),
    client_id     LowCardinality(String)          CODEC(ZSTD(1)),
    new_key_id    String                          CODEC(ZSTD(1)),
    grace_until   Nullable(DateTime64(3, 'UTC')),
    reason        String                          CODEC(ZSTD(1)),
    src_partition Int32,
    src_offset    Int64,
    ingested_at   DateTime('UTC')                 DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (key_id, ts)
SETTINGS non_replicated_deduplication_window = 10000;

-- The latest state of every key, by event time, so a late event never overwrites a newer one.
-- Read it with FINAL (or argMax by updated_at).
CREATE TABLE IF NOT EXISTS key_lifecycle
(
    key_id      String,
    client_id   LowCardinality(String),
    state       Enum8('active' = 1, 'retiring' = 2, 'retired' = 3, 'revoked' = 4),
    last_event  Enum8('key.created' = 1, 'key.rotation_started' = 2, 'key.retired' = 3, 'key.revoked' = 4),
    updated_at  DateTime64(3, 'UTC'),
    new_key_id  String,
    grace_until Nullable(DateTime64(3, 'UTC')),
    reason      String
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_lifecycle_mv TO key_lifecycle AS
SELECT
    key_id,
    client_id,
    CAST(multiIf(type = 'key.created', 'active',
                 type = 'key.rotation_started', 'retiring',
                 type = 'key.retired', 'retired',
                 'revoked'), 'Enum8(\'active\' = 1, \'retiring\' = 2, \'retired\' = 3, \'revoked\' = 4)') AS state,
    type AS last_event,
    ts   AS updated_at,
    new_key_id,
    grace_until,
    reason
FROM key_lifecycle_events;
