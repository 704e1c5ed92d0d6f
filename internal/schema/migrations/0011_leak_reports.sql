-- Which key and client each fingerprint of a raw API key was last seen with, so that a reported
-- leaked secret is matched to its key without scanning raw events (leakreport reads it). Only events
-- that carried a raw key have a fingerprint. Query it with argMaxMerge(key_id), argMaxMerge(client_id)
-- and max(last_seen), GROUP BY key_fingerprint. No TTL: one small row per fingerprint ever seen.
CREATE TABLE IF NOT EXISTS key_fingerprints
(
    key_fingerprint String,
    key_id          AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    client_id       AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    first_seen      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen       SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY key_fingerprint
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS key_fingerprints_mv TO key_fingerprints AS
SELECT
    key_fingerprint,
    argMaxState(toString(key_id), ts)    AS key_id,
    argMaxState(toString(client_id), ts) AS client_id,
    min(ts)                              AS first_seen,
    max(ts)                              AS last_seen
FROM auth_events
WHERE key_fingerprint != ''
GROUP BY key_fingerprint;

-- Events stored before this migration: argMax, min and max give the same answer when a row is
-- counted twice, so events that arrive while this runs do no harm.
INSERT INTO key_fingerprints
SELECT
    key_fingerprint,
    argMaxState(toString(key_id), ts),
    argMaxState(toString(client_id), ts),
    min(ts),
    max(ts)
FROM auth_events
WHERE key_fingerprint != ''
GROUP BY key_fingerprint;
