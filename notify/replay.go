package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// replayRecorder records the MAC of a signed Slack request and says whether this request was the
// first to record it, among every replica.
type replayRecorder interface {
	record(ctx context.Context, mac string, requestTS time.Time) (first bool, err error)
}

const (
	// insertMAC records a request's MAC. Arguments: MAC, receiver id, request timestamp (Unix ms).
	insertMAC = `INSERT INTO slack_interaction_macs (mac, receiver, request_ts) VALUES (?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'))`
	// selectReceivers reads who recorded a MAC (one row, unless the deduplication window was
	// exceeded; two are enough to tell). Argument: MAC.
	selectReceivers = `SELECT receiver FROM slack_interaction_macs WHERE mac = ? LIMIT 2`
)

// replayStore is the slack_interaction_macs table (migration 0015), shared by the replicas.
type replayStore struct {
	conn driver.Conn
}

// record inserts mac with a receiver id of its own and the MAC as insert_deduplication_token, then
// reads who recorded mac: the request is the first when its own row is the only one.
//
// ClickHouse keeps the first insert of a token and drops every later one, atomically (under the
// table's deduplication log on one server, through Keeper between the replicas of a shard), so of
// requests racing with one MAC, on one replica or several, exactly one row is stored and only its
// writer finds its own row. A dropped request finds the winner's row, or none where the read
// reaches a ClickHouse replica the row has not reached yet: refused either way, never let through.
// Without deduplication (more than the table's window of 10,000 inserts in between) a request is
// still first only when its row was alone at the time it read, so two requests that both see
// their own row alone need two ClickHouse replicas that each miss the other's row. Not retried:
// the caller has a fraction of Slack's 3 s.
func (s replayStore) record(ctx context.Context, mac string, requestTS time.Time) (bool, error) {
	if s.conn == nil {
		return false, fmt.Errorf("notify: no ClickHouse connection to check Slack requests for replays (NewInteractions without conn)")
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	receiver := hex.EncodeToString(id[:])
	insertCtx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate": 1, "insert_deduplication_token": "slack_mac:" + mac,
	}))
	if err := s.conn.Exec(insertCtx, insertMAC, mac, receiver, requestTS.UnixMilli()); err != nil {
		return false, fmt.Errorf("notify: record the MAC of a Slack request (timestamp %d) in slack_interaction_macs: %w", requestTS.Unix(), err)
	}
	rows, err := s.conn.Query(ctx, selectReceivers, mac)
	if err != nil {
		return false, fmt.Errorf("notify: read who recorded a Slack request (timestamp %d) in slack_interaction_macs: %w", requestTS.Unix(), err)
	}
	defer rows.Close()
	var receivers []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return false, fmt.Errorf("notify: read who recorded a Slack request (timestamp %d): %w", requestTS.Unix(), err)
		}
		receivers = append(receivers, r)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("notify: read who recorded a Slack request (timestamp %d): %w", requestTS.Unix(), err)
	}
	return len(receivers) == 1 && receivers[0] == receiver, nil
}
