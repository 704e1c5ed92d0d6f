package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema"
)

// Row states.
const (
	statePending = "pending"
	stateSent    = "sent"
	stateFailed  = "failed"
)

// row is one message's state: one version of a notifications row.
type row struct {
	GroupKey       string    `ch:"group_key"`
	Channel        string    `ch:"channel"`
	Episode        uint32    `ch:"episode"`
	NotificationID string    `ch:"notification_id"`
	State          string    `ch:"state"`
	Resolved       uint8     `ch:"resolved"`
	Payload        string    `ch:"payload"`      // the message JSON to show
	ContentHash    string    `ch:"content_hash"` // of Payload
	Reply          string    `ch:"reply"`        // a thread reply still to post: resolved, reminder or ""
	ReplySeq       uint32    `ch:"reply_seq"`    // the number of the last reply attempted
	TS             string    `ch:"ts"`           // Slack's message ts, once posted
	ChannelID      string    `ch:"channel_id"`   // the conversation id Slack posted it to (Channel may be a name)
	SentHash       string    `ch:"sent_hash"`    // content hash of what Slack shows
	InFlight       uint8     `ch:"in_flight"`    // a post (no ts yet) or reply (ReplySeq) was attempted, outcome unknown
	InFlightHash   string    `ch:"inflight_hash"`
	FirstAttemptAt time.Time `ch:"first_attempt_at"`
	Attempts       uint32    `ch:"attempts"`
	LastError      string    `ch:"last_error"`
	NextAttemptAt  time.Time `ch:"next_attempt_at"`
	CreatedAt      time.Time `ch:"created_at"`
	UpdatedAt      time.Time `ch:"updated_at"`
	Version        uint64    `ch:"version"`
}

type rowKey struct {
	group, channel string
	episode        uint32
}

func (r *row) key() rowKey { return rowKey{r.GroupKey, r.Channel, r.Episode} }

const (
	notificationsColumns = `group_key, channel, episode, notification_id, state, resolved, payload, content_hash, reply, reply_seq, ts,
	channel_id, sent_hash, in_flight, inflight_hash, first_attempt_at, attempts, last_error, next_attempt_at, created_at, updated_at, version`
	// selectLatestEpisode reads the newest episode of a group in a channel. Arguments: group key, channel.
	selectLatestEpisode = `SELECT ` + notificationsColumns + ` FROM notifications FINAL
WHERE group_key = ? AND channel = ? ORDER BY episode DESC LIMIT 1`
	// selectPending reads the outbox: every message not delivered yet.
	selectPending      = `SELECT ` + notificationsColumns + ` FROM notifications FINAL WHERE state = 'pending'`
	insertNotification = `INSERT INTO notifications (` + notificationsColumns + `)`
)

func notificationID(group, channel string, episode uint32) string {
	sum := sha256.Sum256([]byte(group + "\x00" + channel + "\x00" + strconv.FormatUint(uint64(episode), 10)))
	return hex.EncodeToString(sum[:12])
}

func contentHash(payload string) string {
	sum := sha256.Sum256([]byte(payload))
	return hex.EncodeToString(sum[:16])
}

// store reads and writes the notifications table.
type store struct {
	conn driver.Conn
}

func (s store) latest(ctx context.Context, group, channel string) (*row, error) {
	var rows []row
	if err := s.conn.Select(ctx, &rows, selectLatestEpisode, group, channel); err != nil {
		return nil, fmt.Errorf("notify: read the message of group %s in %s: %w", group, channel, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}

func (s store) pending(ctx context.Context) ([]row, error) {
	var rows []row
	if err := s.conn.Select(ctx, &rows, selectPending); err != nil {
		return nil, fmt.Errorf("notify: read the outbox: %w", err)
	}
	return rows, nil
}

// write stores one version of r, retrying while ClickHouse is unreachable (up to a minute; the
// callers keep the row and try again later); the
// deduplication token (id and version) keeps a retried insert that did arrive from counting twice.
func (s store) write(ctx context.Context, r *row) error {
	token := r.NotificationID + ":" + strconv.FormatUint(r.Version, 10)
	if err := schema.InsertRow(ctx, s.conn, insertNotification, token, r); err != nil {
		return fmt.Errorf("notify: store message %s of group %s in %s: %w", r.NotificationID, r.GroupKey, r.Channel, err)
	}
	return nil
}
