-- One row per authentication attempt (contract 3.1). Raw API keys never reach this table: an event
-- that carried one holds its keyed fingerprint instead. Ordered for per-key scans over time.
CREATE TABLE IF NOT EXISTS auth_events
(
    ts              DateTime64(3, 'UTC')    CODEC(DoubleDelta, ZSTD(1)),
    key_id          LowCardinality(String)  CODEC(ZSTD(1)),
    key_fingerprint String                  CODEC(ZSTD(1)),
    client_id       LowCardinality(String)  CODEC(ZSTD(1)),
    outcome         Enum8('ok' = 1, 'invalid_key' = 2, 'expired_key' = 3, 'revoked_key' = 4,
                          'forbidden' = 5, 'rate_limited' = 6, 'error' = 7),
    status          UInt16                  CODEC(T64, ZSTD(1)),
    ip              IPv6                    CODEC(ZSTD(1)),
    user_agent      LowCardinality(String)  CODEC(ZSTD(1)),
    method          LowCardinality(String)  CODEC(ZSTD(1)),
    route           LowCardinality(String)  CODEC(ZSTD(1)),
    request_id      String                  CODEC(ZSTD(1)),
    gateway         LowCardinality(String)  CODEC(ZSTD(1)),
    src_partition   Int32                   CODEC(T64, ZSTD(1)),
    src_offset      Int64                   CODEC(Delta, ZSTD(1)),
    ingested_at     DateTime('UTC')         DEFAULT now() CODEC(Delta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (key_id, ts)
TTL toDateTime(ts) + toIntervalDay({{.AuthEventsDays}})
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

-- Per-minute rollup per key × client × outcome, with distinct-IP state: what detectors and
-- dashboards read instead of raw rows. Query it with sum(requests) and uniqMerge(distinct_ips).
CREATE TABLE IF NOT EXISTS auth_events_1m
(
    minute       DateTime('UTC')                                CODEC(DoubleDelta, ZSTD(1)),
    key_id       LowCardinality(String)                         CODEC(ZSTD(1)),
    client_id    LowCardinality(String)                         CODEC(ZSTD(1)),
    outcome      Enum8('ok' = 1, 'invalid_key' = 2, 'expired_key' = 3, 'revoked_key' = 4,
                       'forbidden' = 5, 'rate_limited' = 6, 'error' = 7),
    requests     SimpleAggregateFunction(sum, UInt64)           CODEC(T64, ZSTD(1)),
    distinct_ips AggregateFunction(uniq, IPv6),
    first_seen   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (key_id, client_id, outcome, minute)
TTL minute + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS auth_events_1m_mv TO auth_events_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    key_id,
    client_id,
    outcome,
    count()             AS requests,
    uniqState(ip)       AS distinct_ips,
    min(ts)             AS first_seen,
    max(ts)             AS last_seen
FROM auth_events
GROUP BY minute, key_id, client_id, outcome;
