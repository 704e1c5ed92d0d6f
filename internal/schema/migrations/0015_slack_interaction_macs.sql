-- The MACs of the Slack interactions received (package notify), shared by every replica so that a
-- replayed request is refused whichever replica it reaches. mac is the lower-case hex of the bytes
-- of X-Slack-Signature's HMAC, so the case of the header's hex digits makes no other request.
-- A request whose signature verifies inserts (mac, a receiver id of its own) with mac as
-- insert_deduplication_token: ClickHouse stores the first insert of a MAC and drops the others,
-- and a request goes on only when the row it then reads for its MAC is its own. Requests refused
-- before they are authenticated are never written.
-- Slack's timestamps are accepted 5 minutes either side of now, so a MAC matters until 5 minutes
-- after its request's timestamp; rows are kept 5 minutes more, for the replicas' clocks to differ,
-- then dropped by the TTL. The deduplication window (inserts, not time) only has to outlast those
-- 10 minutes: one insert per click.
CREATE TABLE IF NOT EXISTS slack_interaction_macs
(
    mac         String,
    receiver    String,
    request_ts  DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY mac
TTL toDateTime(request_ts) + INTERVAL 10 MINUTE
SETTINGS non_replicated_deduplication_window = 10000;
