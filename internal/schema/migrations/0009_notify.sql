-- The Slack outbox and notification log (package notify): one row per message, that is per group,
-- channel and episode (a group that resolves and fires again later is a new episode and a new
-- message). The latest version of a row is its state: what should be shown (payload, content_hash),
-- what was last delivered (ts, sent_hash), and the retry bookkeeping. Kept without a TTL: it is the
-- record of what was sent, and restarts read the undelivered rows back from it.
CREATE TABLE IF NOT EXISTS notifications
(
    group_key        String,
    channel          LowCardinality(String),
    episode          UInt32,
    -- notification_id is carried in the Slack message's metadata, to adopt a message posted just
    -- before a crash instead of posting it twice.
    notification_id  String,
    state            Enum8('pending' = 1, 'sent' = 2, 'failed' = 3),
    resolved         UInt8,
    payload          String,
    content_hash     String,
    reply            String,
    -- reply_seq numbers the thread replies; the one in flight is carried in its metadata too.
    reply_seq        UInt32,
    ts               String,
    sent_hash        String,
    -- in_flight: a post (ts still empty) or a thread reply (reply_seq) was attempted with an
    -- outcome not known yet.
    in_flight        UInt8,
    inflight_hash    String,
    first_attempt_at DateTime64(3, 'UTC'),
    attempts         UInt32,
    last_error       String,
    next_attempt_at  DateTime64(3, 'UTC'),
    created_at       DateTime64(3, 'UTC'),
    updated_at       DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (group_key, channel, episode)
SETTINGS non_replicated_deduplication_window = 10000;
