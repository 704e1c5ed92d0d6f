-- Ingest builds the rollups itself: it holds every event of a batch decoded in memory, aggregates
-- the batch per rollup and inserts the few aggregated rows, where a materialized view on
-- auth_events made ClickHouse aggregate every event again, once per view.
--
-- Each rollup R gets an input table R_in (engine Null: nothing is stored there) that ingest inserts
-- into, and two views reading it: R_mv turns the aggregated rows into R's rows (aggregate states
-- from plain arrays with arrayReduce), and R_progress_mv records in ingest_progress, from the
-- progress rows of the same insert (progress_offset >= 0, one per topic and partition of the
-- batch), the highest Kafka offset R holds. The rows and their progress arrive in one insert, so R
-- and its progress agree, and a restarted consumer rebuilds exactly what R lacks.
--
-- The two largest rollups move to tables laid out for size and for reads of one key over time:
-- key_minutes replaces auth_events_1m (without first and last times), key_caller_hours replaces
-- key_callers_1h (first and last call and last success to the second), both with monthly
-- partitions; their rows are copied over.
--
-- Events stored before this migration were rolled up by the views on auth_events: the progress of
-- every rollup starts at auth_events' progress. Ingest stops while this migration runs (an older
-- keywatch still ingesting meanwhile stores events that no rollup counts).

DROP VIEW IF EXISTS auth_events_1m_mv;

DROP VIEW IF EXISTS key_callers_1h_mv;

DROP VIEW IF EXISTS key_usage_mv;

DROP VIEW IF EXISTS key_networks_1d_mv;

DROP VIEW IF EXISTS key_ips_1h_mv;

DROP VIEW IF EXISTS key_fingerprints_mv;

-- auth_events and the rollups take inserts of one batch each (ingest.batch_max_rows, 50,000 events
-- by default), far smaller than the parts they end up in: merging them 5 at a time (ClickHouse's
-- default) rewrites each row many times, and those merges cost ClickHouse more than the inserts
-- themselves. At least 10 at a time rewrites each row fewer times; a partition holds a few dozen
-- parts more.
ALTER TABLE auth_events MODIFY SETTING min_parts_to_merge_at_once = 10;

ALTER TABLE key_usage MODIFY SETTING min_parts_to_merge_at_once = 10;

ALTER TABLE key_networks_1d MODIFY SETTING min_parts_to_merge_at_once = 10;

ALTER TABLE key_ips_1h MODIFY SETTING min_parts_to_merge_at_once = 10;

ALTER TABLE key_fingerprints MODIFY SETTING min_parts_to_merge_at_once = 10;

-- Requests per key, minute, client and outcome: monthly partitions and a
-- key's minutes in order, so that a key's rows are together and a time range of them is a range of
-- the primary key. Query it with sum(requests).
CREATE TABLE IF NOT EXISTS key_minutes
(
    minute    DateTime('UTC')                      CODEC(DoubleDelta, ZSTD(1)),
    key_id    LowCardinality(String)               CODEC(ZSTD(1)),
    client_id LowCardinality(String)               CODEC(ZSTD(1)),
    outcome   Enum8('ok' = 1, 'invalid_key' = 2, 'expired_key' = 3, 'revoked_key' = 4,
                    'forbidden' = 5, 'rate_limited' = 6, 'error' = 7) CODEC(ZSTD(1)),
    requests  SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (key_id, minute, client_id, outcome)
TTL minute + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000, min_parts_to_merge_at_once = 10;

-- Who called with each key, per hour: the client, address and user agent, their requests and
-- failures, and when in the hour they first called, last called and last succeeded, in seconds from
-- the hour's start (last_ok_s: that + 1; 0 when every request of the hour was refused); read them as
-- first_seen, last_seen and last_ok. Monthly partitions, so that a key's rows are together; a
-- caller's hours are a range of the primary key (its rhythm is a read of its own rows).
CREATE TABLE IF NOT EXISTS key_caller_hours
(
    hour       DateTime('UTC')                                          CODEC(DoubleDelta, ZSTD(1)),
    key_id     LowCardinality(String)                                   CODEC(ZSTD(1)),
    client_id  LowCardinality(String)                                   CODEC(ZSTD(1)),
    ip         IPv6                                                     CODEC(ZSTD(1)),
    user_agent LowCardinality(String)                                   CODEC(ZSTD(1)),
    asn        SimpleAggregateFunction(anyLast, UInt32)                 CODEC(ZSTD(1)),
    country    SimpleAggregateFunction(anyLast, LowCardinality(String)) CODEC(ZSTD(1)),
    requests   SimpleAggregateFunction(sum, UInt64)                     CODEC(T64, ZSTD(1)),
    failures   SimpleAggregateFunction(sum, UInt64)                     CODEC(T64, ZSTD(1)),
    first_s    SimpleAggregateFunction(min, UInt16)                     CODEC(ZSTD(1)),
    last_s     SimpleAggregateFunction(max, UInt16)                     CODEC(ZSTD(1)),
    last_ok_s  SimpleAggregateFunction(max, UInt16)                     CODEC(ZSTD(1)),
    first_seen DateTime('UTC') ALIAS hour + toIntervalSecond(first_s),
    last_seen  DateTime('UTC') ALIAS hour + toIntervalSecond(last_s),
    last_ok    DateTime('UTC') ALIAS if(last_ok_s = 0, toDateTime(0, 'UTC'), hour + toIntervalSecond(last_ok_s - 1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (key_id, client_id, ip, user_agent, hour)
TTL hour + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000, min_parts_to_merge_at_once = 10;

INSERT INTO key_minutes (minute, key_id, client_id, outcome, requests)
SELECT minute, key_id, client_id, outcome, sum(requests)
FROM auth_events_1m
GROUP BY minute, key_id, client_id, outcome;

INSERT INTO key_caller_hours (hour, key_id, client_id, ip, user_agent, asn, country, requests, failures, first_s, last_s, last_ok_s)
SELECT hour, key_id, client_id, ip, user_agent, anyLast(asn), anyLast(country), sum(requests), sum(failures),
    toUInt16(toUnixTimestamp(min(first_seen)) - toUnixTimestamp(hour)),
    toUInt16(toUnixTimestamp(max(last_seen)) - toUnixTimestamp(hour)),
    if(max(last_ok) < hour, 0, toUInt16(toUnixTimestamp(max(last_ok)) - toUnixTimestamp(hour) + 1))
FROM key_callers_1h
GROUP BY hour, key_id, client_id, ip, user_agent;

DROP TABLE IF EXISTS auth_events_1m;

DROP TABLE IF EXISTS key_callers_1h;

INSERT INTO ingest_progress (table, topic, partition, max_offset)
SELECT r.table, p.topic, p.partition, max(p.max_offset)
FROM ingest_progress AS p
CROSS JOIN (SELECT arrayJoin(['key_minutes', 'key_caller_hours', 'key_usage', 'key_networks_1d', 'key_ips_1h', 'key_fingerprints', 'key_refusals_1h']) AS table) AS r
WHERE p.table = 'auth_events'
GROUP BY r.table, p.topic, p.partition;

CREATE TABLE IF NOT EXISTS key_minutes_in
(
    key_id             String,
    minute             DateTime('UTC'),
    client_id          String,
    outcome            Enum8('ok' = 1, 'invalid_key' = 2, 'expired_key' = 3, 'revoked_key' = 4,
                             'forbidden' = 5, 'rate_limited' = 6, 'error' = 7),
    requests           UInt64,
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_minutes_mv TO key_minutes AS
SELECT minute, key_id, client_id, outcome, requests
FROM key_minutes_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_minutes_progress_mv TO ingest_progress AS
SELECT 'key_minutes' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_minutes_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

-- first_seen, last_seen and last_ok are the hour's first and last call and last success
-- (1970-01-01 when none).
CREATE TABLE IF NOT EXISTS key_caller_hours_in
(
    key_id             String,
    hour               DateTime('UTC'),
    client_id          String,
    ip                 IPv6,
    user_agent         String,
    asn                UInt32,
    country            String,
    requests           UInt64,
    failures           UInt64,
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    last_ok            DateTime64(3, 'UTC'),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_caller_hours_mv TO key_caller_hours AS
SELECT hour, key_id, client_id, ip, user_agent, asn, country, requests, failures,
    toUInt16(toUnixTimestamp(first_seen) - toUnixTimestamp(hour)) AS first_s,
    toUInt16(toUnixTimestamp(last_seen) - toUnixTimestamp(hour)) AS last_s,
    if(last_ok < hour, 0, toUInt16(toUnixTimestamp(last_ok) - toUnixTimestamp(hour) + 1)) AS last_ok_s
FROM key_caller_hours_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_caller_hours_progress_mv TO ingest_progress AS
SELECT 'key_caller_hours' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_caller_hours_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

CREATE TABLE IF NOT EXISTS key_usage_in
(
    key_id             String,
    client_id          String,
    requests           UInt64,
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_usage_mv TO key_usage AS
SELECT key_id, client_id, requests, first_seen, last_seen
FROM key_usage_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_usage_progress_mv TO ingest_progress AS
SELECT 'key_usage' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_usage_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

-- A network is named from net_ip (any address of it) and asn as 0007 names it: AS<number> when the
-- ASN is known, else the /24 of an IPv4 or the /48 of an IPv6 address.
CREATE TABLE IF NOT EXISTS key_networks_1d_in
(
    key_id             String,
    day                Date,
    net_ip             IPv6,
    country            String,
    asn                UInt32,
    as_org             String,
    requests           UInt64,
    failures           UInt64,
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    sample_ips         Array(IPv6),
    sample_uas         Array(String),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_networks_1d_mv TO key_networks_1d AS
SELECT
    day,
    key_id,
    if(asn != 0, concat('AS', toString(asn)),
       if(startsWith(cutIPv6(net_ip, 10, 1), '::ffff:'), concat(substring(cutIPv6(net_ip, 10, 1), 8), '/24'),
          concat(cutIPv6(net_ip, 10, 1), '/48'))) AS network,
    country,
    asn,
    as_org,
    requests,
    failures,
    first_seen,
    last_seen,
    arrayReduce('groupUniqArrayState(5)', sample_ips) AS sample_ips,
    arrayReduce('groupUniqArrayState(5)', sample_uas) AS sample_uas
FROM key_networks_1d_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_networks_1d_progress_mv TO ingest_progress AS
SELECT 'key_networks_1d' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_networks_1d_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

CREATE TABLE IF NOT EXISTS key_ips_1h_in
(
    key_id             String,
    hour               DateTime('UTC'),
    ips                Array(IPv6),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_ips_1h_mv TO key_ips_1h AS
SELECT hour, key_id, arrayReduce('uniqState', ips) AS distinct_ips
FROM key_ips_1h_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_ips_1h_progress_mv TO ingest_progress AS
SELECT 'key_ips_1h' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_ips_1h_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

-- last_key_id and last_client_id are those of the fingerprint's latest event (at last_seen).
CREATE TABLE IF NOT EXISTS key_fingerprints_in
(
    key_fingerprint    String,
    last_key_id        String,
    last_client_id     String,
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_fingerprints_mv TO key_fingerprints AS
SELECT
    key_fingerprint,
    arrayReduce('argMaxState', [last_key_id], [last_seen])    AS key_id,
    arrayReduce('argMaxState', [last_client_id], [last_seen]) AS client_id,
    first_seen,
    last_seen
FROM key_fingerprints_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_fingerprints_progress_mv TO ingest_progress AS
SELECT 'key_fingerprints' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_fingerprints_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;

-- Forbidden requests per key and hour, per method, route, address, user agent and ASN: what scope
-- probing and hygiene read as a key's history of refusals. Forbidden answers are a small part of
-- traffic, so the table is small; first_seen and last_seen are the group's first and last request
-- to the millisecond. Monthly partitions and a key's hours in order, so that a time range of a
-- key's rows is a range of the primary key. Its rows are built from auth_events' forbidden events,
-- which its progress (above) counts.
CREATE TABLE IF NOT EXISTS key_refusals_1h
(
    hour       DateTime('UTC')                                     CODEC(DoubleDelta, ZSTD(1)),
    key_id     LowCardinality(String)                              CODEC(ZSTD(1)),
    method     LowCardinality(String)                              CODEC(ZSTD(1)),
    route      LowCardinality(String)                              CODEC(ZSTD(1)),
    ip         IPv6                                                CODEC(ZSTD(1)),
    user_agent LowCardinality(String)                              CODEC(ZSTD(1)),
    asn        UInt32                                              CODEC(ZSTD(1)),
    requests   SimpleAggregateFunction(sum, UInt64)                CODEC(T64, ZSTD(1)),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC'))  CODEC(ZSTD(1)),
    last_seen  SimpleAggregateFunction(max, DateTime64(3, 'UTC'))  CODEC(ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (key_id, hour, method, route, ip, user_agent, asn)
TTL hour + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000, min_parts_to_merge_at_once = 10;

INSERT INTO key_refusals_1h (hour, key_id, method, route, ip, user_agent, asn, requests, first_seen, last_seen)
SELECT toStartOfHour(ts) AS hour, key_id, method, route, ip, user_agent, asn, count(), min(ts), max(ts)
FROM auth_events
WHERE outcome = 'forbidden'
GROUP BY hour, key_id, method, route, ip, user_agent, asn;

CREATE TABLE IF NOT EXISTS key_refusals_1h_in
(
    key_id             String,
    hour               DateTime('UTC'),
    method             String,
    route              String,
    ip                 IPv6,
    user_agent         String,
    asn                UInt32,
    requests           UInt64,
    first_seen         DateTime64(3, 'UTC'),
    last_seen          DateTime64(3, 'UTC'),
    progress_topic     String,
    progress_partition Int32,
    progress_offset    Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_refusals_1h_mv TO key_refusals_1h AS
SELECT hour, key_id, method, route, ip, user_agent, asn, requests, first_seen, last_seen
FROM key_refusals_1h_in
WHERE progress_offset < 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_refusals_1h_progress_mv TO ingest_progress AS
SELECT 'key_refusals_1h' AS table, progress_topic AS topic, progress_partition AS partition, max(progress_offset) AS max_offset
FROM key_refusals_1h_in
WHERE progress_offset >= 0
GROUP BY progress_topic, progress_partition;
