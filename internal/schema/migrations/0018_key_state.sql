-- key_lifecycle: every key's state as rotation.Build (package rotation) folds it from the lifecycle
-- events, so that the dashboards, `keywatch readiness` and the detectors judge a key alike.
-- rotation.Build is the authority: change a rule there and here together; the dashboards tests
-- (TestKeyStateMatchesReadiness, TestKeyLifecycleViewFollowsBuild) compare the two.
--
-- Events are taken in the order rotation.Build sorts them: by ts, then type in the order a key
-- lives (created, rotation_started, retired, revoked), key_id, new_key_id, grace_until, client_id.
-- Per key:
--   * a key exists once an event names it: as key_id, or as new_key_id of a key.rotation_started;
--   * state: revoked once any key.revoked, else retired once any key.retired, else retiring once
--     any key.rotation_started of it, else active, whatever order the events came in or happened;
--   * updated_at: the first time of the events that gave it that state (for an active key, of any
--     event naming it); created_at: its first key.created or the first start of a rotation to it,
--     NULL when neither;
--   * client_id: the first client an event naming it states, a successor taking the client of the
--     rotation that names it;
--   * its rotation (rotation_id "old>new", new_key_id, rotation_client_id, rotation_started_at,
--     grace_until): the last one started from it. A rotation starts at its first
--     key.rotation_started and keeps that event's client, else the old key's client then; its
--     grace_until is the latest deadline its starts give.
-- One case is left to rotation.Build: where a start states no client and its old key's client up
-- to then came from the rotation that introduced that key, the view takes the old key's own
-- events' client instead (so rotation_client_id and the successor's client_id may differ).
DROP VIEW IF EXISTS key_lifecycle_mv;

DROP TABLE IF EXISTS key_lifecycle;

CREATE OR REPLACE VIEW key_lifecycle AS
SELECT
    subject AS key_id,
    argMinIf(subject_client, order_key, subject_client != '') AS client_id,
    greatest(maxIf(rank, own), 1) AS state_rank,
    CAST(state_rank, 'Enum8(\'active\' = 1, \'retiring\' = 2, \'retired\' = 3, \'revoked\' = 4)') AS state,
    if(countIf(rank = 1 OR NOT own) = 0, NULL, minIf(ts, rank = 1 OR NOT own)) AS created_at,
    multiIf(state_rank = 4, minIf(ts, own AND rank = 4), state_rank = 3, minIf(ts, own AND rank = 3),
            state_rank = 2, minIf(ts, own AND rank = 2), min(ts)) AS updated_at,
    countIf(own AND rank = 2) > 0 AS rotating,
    argMaxIf(successor, (ts, successor), own AND rank = 2) AS new_key_id,
    if(rotating, concat(subject, '>', new_key_id), '') AS rotation_id,
    argMaxIf(rotation_client, (ts, successor), own AND rank = 2) AS rotation_client_id,
    if(rotating, argMaxIf(rotation_started, (ts, successor), own AND rank = 2), NULL) AS rotation_started_at,
    argMaxIf(tuple(rotation_grace), (ts, successor), own AND rank = 2).1 AS grace_until
FROM
(
    SELECT
        ts, rank, new_key_id AS successor, order_key, rotation_client, rotation_started, rotation_grace,
        arrayJoin(if(rank = 2 AND new_key_id != '',
                     [(key_id, true, client_id), (new_key_id, false, rotation_client)],
                     [(key_id, true, client_id)])) AS subject_row,
        subject_row.1 AS subject,
        subject_row.2 AS own,
        subject_row.3 AS subject_client
    FROM
    (
        SELECT
            *,
            argMinIf(if(client_id != '', client_id, key_client), order_key, rank = 2)
                OVER (PARTITION BY key_id, new_key_id) AS rotation_client,
            minIf(ts, rank = 2) OVER (PARTITION BY key_id, new_key_id) AS rotation_started,
            argMaxIf(tuple(grace_until), order_key, rank = 2 AND isNotNull(grace_until))
                OVER (PARTITION BY key_id, new_key_id) AS rotation_grace_tuple,
            rotation_grace_tuple.1 AS rotation_grace
        FROM
        (
            SELECT
                ts, toUInt8(type) AS rank, key_id, toString(client_id) AS client_id, new_key_id, grace_until,
                (ts, rank, key_id, new_key_id, ifNull(toUnixTimestamp64Milli(grace_until), 0), client_id) AS order_key,
                argMinIf(client_id, order_key, client_id != '')
                    OVER (PARTITION BY key_id ORDER BY order_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS key_client
            FROM key_lifecycle_events
        )
    )
)
GROUP BY subject;
