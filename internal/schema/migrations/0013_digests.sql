-- The record of the one-off messages about rotations (package digest): one row per rotation,
-- message kind and channel, written after the message is in the Slack outbox. A rotation with a
-- row here is not nudged again, across restarts and leader changes; a message queued just before
-- a crash, without its row, is not queued twice either (the outbox keeps one message per key).
-- Kept without a TTL: it is the record of what was said, and a few rows per rotation.
CREATE TABLE IF NOT EXISTS rotation_nudges
(
    rotation_id     String,
    kind            LowCardinality(String),
    channel         LowCardinality(String),
    client_id       String,
    old_key_id      String,
    new_key_id      String,
    reason          String,
    message_key     String,
    sent_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (rotation_id, kind, channel)
SETTINGS non_replicated_deduplication_window = 10000;
