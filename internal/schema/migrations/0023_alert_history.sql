-- The history of each alert (package alerting), for the web console: one row per change that
-- matters to a person (a new episode pending, firing, resolved, silenced or no longer, inhibited
-- or no longer, the action's status), written by the evaluator after the alerts of the same pass.
-- alert_id is the episode's id (Alert.ID), empty while pending. A retried batch writes the same
-- rows, which the ORDER BY key makes one: read with FINAL. Kept 90 days.
CREATE TABLE IF NOT EXISTS alert_history
(
    fingerprint String,
    at          DateTime64(3, 'UTC'),
    alert_id    String,
    event       LowCardinality(String),
    detail      String
)
ENGINE = ReplacingMergeTree
ORDER BY (fingerprint, at, event)
TTL toDateTime(at) + INTERVAL 90 DAY;
