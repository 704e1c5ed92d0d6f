-- Who called with each key, per hour: the client, or for unknown clients the (IP, user agent)
-- pair. Lingering clients, the readiness gate and failure attribution read this, never raw rows.
CREATE TABLE IF NOT EXISTS key_callers_1h
(
    hour        DateTime('UTC')                                  CODEC(DoubleDelta, ZSTD(1)),
    key_id      LowCardinality(String)                           CODEC(ZSTD(1)),
    client_id   LowCardinality(String)                           CODEC(ZSTD(1)),
    ip          IPv6                                             CODEC(ZSTD(1)),
    user_agent  LowCardinality(String)                           CODEC(ZSTD(1)),
    asn         SimpleAggregateFunction(anyLast, UInt32),
    country     SimpleAggregateFunction(anyLast, LowCardinality(String)),
    requests    SimpleAggregateFunction(sum, UInt64)             CODEC(T64, ZSTD(1)),
    failures    SimpleAggregateFunction(sum, UInt64)             CODEC(T64, ZSTD(1)),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(hour)
ORDER BY (key_id, client_id, ip, user_agent, hour)
TTL hour + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_callers_1h_mv TO key_callers_1h AS
SELECT
    toStartOfHour(ts)      AS hour,
    key_id,
    client_id,
    ip,
    user_agent,
    anyLast(asn)           AS asn,
    anyLast(country)       AS country,
    count()                AS requests,
    countIf(outcome != 'ok') AS failures,
    min(ts)                AS first_seen,
    max(ts)                AS last_seen
FROM auth_events
GROUP BY hour, key_id, client_id, ip, user_agent;

-- Every key ever seen in traffic, with when it was first and last used: small, read by hygiene.
CREATE TABLE IF NOT EXISTS key_usage
(
    key_id     String,
    client_id  SimpleAggregateFunction(anyLast, LowCardinality(String)),
    requests   SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen  SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY key_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_usage_mv TO key_usage AS
SELECT key_id, anyLast(client_id) AS client_id, count() AS requests, min(ts) AS first_seen, max(ts) AS last_seen
FROM auth_events
GROUP BY key_id;

-- What the detectors found, one row per finding per run. A finding's fingerprint is stable across
-- runs (detector + key + client [+ rotation]); alerting reads the latest run of each detector.
CREATE TABLE IF NOT EXISTS findings
(
    detected_at DateTime64(3, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    run_id      String,
    detector    LowCardinality(String),
    fingerprint String,
    severity    Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    score       Float64,
    key_id      String,
    client_id   LowCardinality(String),
    rotation_id String,
    summary     String,
    evidence    String                 CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toDate(detected_at)
ORDER BY (detector, fingerprint, detected_at)
TTL toDateTime(detected_at) + toIntervalDay({{.RollupsDays}});

-- One row per detector run, whether it found anything or failed: a fingerprint missing from a
-- successful run is resolved; one missing from a failed run is not.
CREATE TABLE IF NOT EXISTS detector_runs
(
    run_id      String,
    detector    LowCardinality(String),
    started_at  DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC'),
    findings    UInt32,
    error       String
)
ENGINE = MergeTree
ORDER BY (detector, started_at)
TTL toDateTime(started_at) + toIntervalDay({{.RollupsDays}});
