-- key_caller_months: per key, caller (client, address, user agent) and month, the caller's last
-- call and last success (to the second; 1970-01-01 when none) and the hours it was active (a
-- bitmap of hours since 1970). The lingering detector chooses the callers that may still depend
-- on a key from it, one row per caller and month, and reads key_caller_hours only for those:
-- its cost follows the number of callers, not how long a rotation has run or how many events the
-- hours hold. A caller's rhythm (the gaps between its active hours) comes from the bitmaps.
--
-- Filled by a second view on key_caller_hours_in: the rows ingest aggregates for key_caller_hours
-- fill it too, in the same insert, so it shares key_caller_hours's progress in ingest_progress.
-- A month's rows are kept until the month's last day is older than the rollups' retention.
--
-- The view is created before the rows already stored are copied: every value is a maximum or a
-- set of hours, so a row both copied and inserted through the view changes nothing, and ingest
-- may keep running while this migration does.
CREATE TABLE IF NOT EXISTS key_caller_months
(
    month      Date                                                     CODEC(DoubleDelta, ZSTD(1)),
    key_id     LowCardinality(String)                                   CODEC(ZSTD(1)),
    client_id  LowCardinality(String)                                   CODEC(ZSTD(1)),
    ip         IPv6                                                     CODEC(ZSTD(1)),
    user_agent LowCardinality(String)                                   CODEC(ZSTD(1)),
    last_seen  SimpleAggregateFunction(max, DateTime('UTC'))            CODEC(ZSTD(1)),
    last_ok    SimpleAggregateFunction(max, DateTime('UTC'))            CODEC(ZSTD(1)),
    hours      AggregateFunction(groupBitmap, UInt32)                   CODEC(ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(month)
ORDER BY (key_id, client_id, ip, user_agent, month)
TTL toLastDayOfMonth(month) + toIntervalDay({{.RollupsDays}})
SETTINGS non_replicated_deduplication_window = 10000, min_parts_to_merge_at_once = 10;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_caller_months_mv TO key_caller_months AS
SELECT
    toStartOfMonth(hour)                                         AS month,
    key_id,
    client_id,
    ip,
    user_agent,
    max(toDateTime(last_seen, 'UTC'))                            AS last_seen,
    max(if(last_ok < hour, toDateTime(0, 'UTC'), toDateTime(last_ok, 'UTC'))) AS last_ok,
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(hour), 3600))) AS hours
FROM key_caller_hours_in
WHERE progress_offset < 0
GROUP BY month, key_id, client_id, ip, user_agent;

INSERT INTO key_caller_months (month, key_id, client_id, ip, user_agent, last_seen, last_ok, hours)
SELECT
    toStartOfMonth(hour) AS month,
    key_id,
    client_id,
    ip,
    user_agent,
    max(last_seen),
    max(last_ok),
    groupBitmapState(toUInt32(intDiv(toUnixTimestamp(hour), 3600)))
FROM key_caller_hours
GROUP BY month, key_id, client_id, ip, user_agent;
