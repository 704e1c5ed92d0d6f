-- One row per alert version: the life of a finding fingerprint (pending, firing, resolved). Read
-- with FINAL; a restart continues from here (same fired_at, so the same alert id, no re-firing).
-- fired_at and resolved_at are 1970-01-01 while unset. action is the Actor's ActionStatus as JSON.
CREATE TABLE IF NOT EXISTS alerts
(
    fingerprint  String,
    detector     LowCardinality(String),
    key_id       String,
    client_id    String,
    rotation_id  String,
    severity     Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    score        Float64,
    summary      String,
    evidence     String                 CODEC(ZSTD(3)),
    state        Enum8('pending' = 1, 'firing' = 2, 'resolved' = 3),
    active_since DateTime64(3, 'UTC'),
    fired_at     DateTime64(3, 'UTC'),
    resolved_at  DateTime64(3, 'UTC'),
    last_seen    DateTime64(3, 'UTC'),
    silenced     String,
    inhibited    String,
    action       String,
    updated_at   DateTime64(3, 'UTC'),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY fingerprint;

-- Silences made through /v1/silences (the file's silences live in the configuration). Expiring
-- one writes a new version with ends_at set to the time of the DELETE; rows are never removed.
-- matchers is a JSON object: label -> glob.
CREATE TABLE IF NOT EXISTS silences
(
    id         String,
    matchers   String,
    starts_at  DateTime64(3, 'UTC'),
    ends_at    DateTime64(3, 'UTC'),
    created_by String,
    comment    String,
    created_at DateTime64(3, 'UTC'),
    expired_by String,
    updated_at DateTime64(3, 'UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- What each (group, channel) was last told: the content hash of the group and whether it was
-- resolved, so that a restart neither re-sends a resolved group nor unchanged content.
CREATE TABLE IF NOT EXISTS alert_notifications_state
(
    group_key    String,
    channel      String,
    content_hash String,
    resolved     Bool,
    notified_at  DateTime64(3, 'UTC'),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (group_key, channel);
