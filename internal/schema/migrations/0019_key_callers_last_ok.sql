-- When each caller of a key last succeeded with it in the hour (outcome ok; 1970-01-01 when every
-- request of the hour was refused), so that lingering and readiness judge a caller on its
-- successful use: a caller whose every request since a rotation step was refused does not depend
-- on the key. Successful requests are requests - failures. Rows stored before this migration take
-- last_seen for an hour with any successful request.
ALTER TABLE key_callers_1h ADD COLUMN IF NOT EXISTS last_ok SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
    DEFAULT if(failures < requests, last_seen, toDateTime64(0, 3, 'UTC'));

ALTER TABLE key_callers_1h_mv MODIFY QUERY
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
    max(ts)                AS last_seen,
    maxIf(ts, outcome = 'ok') AS last_ok
FROM auth_events
GROUP BY hour, key_id, client_id, ip, user_agent;
