-- Actions on keys (package action): one row per action, whose latest version is its state. The id
-- is the webhook-id sent to the receiver and is derived from the decision (kind, key, alert
-- episode or manual request), so a retried decision or a restart never makes a second action. The
-- body is fixed when the action is queued: every attempt sends the same bytes. Kept without a TTL:
-- the hourly cap counts from it and restarts read queued actions back from it.
CREATE TABLE IF NOT EXISTS actions
(
    id               String,
    kind             LowCardinality(String),
    key_id           String,
    client_id        String,
    alert_id         String,
    reason           String,
    -- mode: the policy mode that decided (dry-run, approve, auto) or manual.
    mode             LowCardinality(String),
    state            Enum8('awaiting_approval' = 1, 'approved' = 2, 'queued' = 3, 'sent' = 4, 'failed' = 5, 'refused' = 6, 'dry_run' = 7),
    -- guardrail: the guardrail that refused it or sent it for approval; empty otherwise.
    guardrail        LowCardinality(String),
    detail           String,
    requested_at     DateTime64(3, 'UTC'),
    approved_by      String,
    queued_at        DateTime64(3, 'UTC'),
    body             String,
    attempts         UInt32,
    first_attempt_at DateTime64(3, 'UTC'),
    next_attempt_at  DateTime64(3, 'UTC'),
    last_status      UInt16,
    last_error       String,
    updated_at       DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
SETTINGS non_replicated_deduplication_window = 10000;

-- The audit of every action decision, approval, refusal and send attempt: append-only, no TTL.
CREATE TABLE IF NOT EXISTS action_audit
(
    at          DateTime64(3, 'UTC'),
    action_id   String,
    kind        LowCardinality(String),
    key_id      String,
    client_id   String,
    alert_id    String,
    event       LowCardinality(String),
    guardrail   LowCardinality(String),
    actor       String,
    http_status UInt16,
    detail      String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (action_id, at)
SETTINGS non_replicated_deduplication_window = 10000;
