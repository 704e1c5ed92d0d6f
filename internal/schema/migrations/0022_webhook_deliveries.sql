-- The outbox of notification webhooks (package webhook): one row per endpoint and event, whose
-- latest version is its delivery state. id is the event's id and the webhook-id every attempt
-- sends; body is fixed when the event is published, so every attempt sends the same bytes.
-- follows is the id of the event this one comes after (an alert.resolved after its
-- alert.firing), delivered first. The first version of a row is always version 1, so publishing
-- an event again never overwrites what its delivery recorded. Kept without a TTL: it is the record
-- of what was sent, and restarts read the pending rows and the published ids back from it.
CREATE TABLE IF NOT EXISTS webhook_deliveries
(
    endpoint         LowCardinality(String),
    id               String,
    type             LowCardinality(String),
    follows          String,
    body             String,
    state            Enum8('pending' = 1, 'sent' = 2, 'failed' = 3),
    attempts         UInt32,
    last_status      UInt16,
    last_error       String,
    created_at       DateTime64(3, 'UTC'),
    next_attempt_at  DateTime64(3, 'UTC'),
    updated_at       DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (endpoint, id)
SETTINGS non_replicated_deduplication_window = 10000;
