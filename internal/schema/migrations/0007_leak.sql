-- Where each key is used, per day: the network (AS<number> when the ASN is known, else the /24 of
-- an IPv4 or the /48 of an IPv6 address) and country, with counts, first/last seen and a few sample
-- addresses and user agents. The leak detector compares a key's recent networks and countries with
-- its baseline here: a few rows per key and day, whatever the traffic. Query it with GROUP BY and
-- sum/min/max/anyLast, and groupUniqArrayMerge(5) for the samples.
CREATE TABLE IF NOT EXISTS key_networks_1d
(
    day         Date                                              CODEC(DoubleDelta, ZSTD(1)),
    key_id      LowCardinality(String)                            CODEC(ZSTD(1)),
    network     String                                            CODEC(ZSTD(1)),
    country     LowCardinality(String)                            CODEC(ZSTD(1)),
    asn         SimpleAggregateFunction(anyLast, UInt32),
    as_org      SimpleAggregateFunction(anyLast, LowCardinality(String)),
    requests    SimpleAggregateFunction(sum, UInt64)              CODEC(T64, ZSTD(1)),
    failures    SimpleAggregateFunction(sum, UInt64)              CODEC(T64, ZSTD(1)),
    first_seen  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen   SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    sample_ips  AggregateFunction(groupUniqArray(5), IPv6),
    sample_uas  AggregateFunction(groupUniqArray(5), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY day
ORDER BY (key_id, network, country, day)
TTL day + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_networks_1d_mv TO key_networks_1d AS
SELECT
    day,
    key_id,
    network,
    country,
    anyLast(asn)                  AS asn,
    anyLast(as_org)               AS as_org,
    count()                       AS requests,
    countIf(outcome != 'ok')      AS failures,
    min(ts)                       AS first_seen,
    max(ts)                       AS last_seen,
    groupUniqArrayState(5)(ip)    AS sample_ips,
    groupUniqArrayState(5)(ua)    AS sample_uas
FROM
(
    -- In a subquery, so that the network expression reads the event's asn, not the aggregate.
    SELECT toDate(ts) AS day, key_id, country, asn, as_org, outcome, ts, ip, toString(user_agent) AS ua,
           if(asn != 0, concat('AS', toString(asn)),
              if(startsWith(cutIPv6(ip, 10, 1), '::ffff:'), concat(substring(cutIPv6(ip, 10, 1), 8), '/24'),
                 concat(cutIPv6(ip, 10, 1), '/48'))) AS network
    FROM auth_events
)
GROUP BY day, key_id, network, country;

-- Distinct addresses per key and hour, as mergeable state: the leak detector finalizes each
-- completed hour into key_ip_hours and judges the current hours from here.
CREATE TABLE IF NOT EXISTS key_ips_1h
(
    hour         DateTime('UTC')              CODEC(DoubleDelta, ZSTD(1)),
    key_id       LowCardinality(String)       CODEC(ZSTD(1)),
    distinct_ips AggregateFunction(uniq, IPv6)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(hour)
ORDER BY (key_id, hour)
TTL hour + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_ips_1h_mv TO key_ips_1h AS
SELECT toStartOfHour(ts) AS hour, key_id, uniqState(ip) AS distinct_ips
FROM auth_events
GROUP BY hour, key_id;

-- Finalized distinct-address counts of completed hours, written by the leak detector (not by a
-- view): plain numbers, so a key's 30-day hourly baseline is a cheap read. A repeated write of an
-- hour replaces the earlier one when parts merge.
CREATE TABLE IF NOT EXISTS key_ip_hours
(
    hour         DateTime('UTC')        CODEC(DoubleDelta, ZSTD(1)),
    key_id       LowCardinality(String) CODEC(ZSTD(1)),
    distinct_ips UInt32                 CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(hour)
ORDER BY (key_id, hour)
TTL hour + toIntervalDay({{.RollupsDays}});
