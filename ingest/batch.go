package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
)

const (
	insertAuthEvents = `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	user_agent, method, route, request_id, gateway, src_partition, src_offset)`
	insertLifecycle = `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until,
	reason, src_partition, src_offset)`
	insertDeadLetters = `INSERT INTO dead_letters (topic, partition, offset, reason, error, excerpt, size)`
)

type storedEvent struct {
	Event
	partition int32
	offset    int64
}

type storedLifecycle struct {
	LifecycleEvent
	partition int32
	offset    int64
}

// DeadLetter is a message that could not become an event.
type DeadLetter struct {
	Topic     string
	Partition int32
	Offset    int64
	Reason    string
	Error     string
	Excerpt   string // redacted
	Size      int
}

type partitionKey struct {
	topic     string
	partition int
}

// offsetRange is the first and last offset a batch holds of one partition.
type offsetRange struct{ first, last kafka.Message }

// batch is what one insert round stores: events, lifecycle events and dead letters decoded from
// one contiguous offset range per partition, and the messages to commit once they are stored.
type batch struct {
	events      []storedEvent
	lifecycle   []storedLifecycle
	deadLetters []DeadLetter
	ranges      map[partitionKey]*offsetRange
	messages    int
}

func newBatch() *batch { return &batch{ranges: map[partitionKey]*offsetRange{}} }

func (b *batch) track(m kafka.Message) {
	b.messages++
	k := partitionKey{m.Topic, m.Partition}
	if r, ok := b.ranges[k]; ok {
		r.last = m
		return
	}
	b.ranges[k] = &offsetRange{first: m, last: m}
}

// commits returns the last message of every partition in the batch: committing them commits all.
func (b *batch) commits() []kafka.Message {
	out := make([]kafka.Message, 0, len(b.ranges))
	for _, r := range b.ranges {
		out = append(out, r.last)
	}
	return out
}

// dedupToken names the batch by its offset ranges ("topic:partition:first-last@ms", sorted), so
// that re-inserting the same messages after a crash is recognised by ClickHouse and dropped. The
// first message's timestamp tells a recreated topic, whose offsets start again at 0, from the old.
func (b *batch) dedupToken() string {
	parts := make([]string, 0, len(b.ranges))
	for k, r := range b.ranges {
		parts = append(parts, fmt.Sprintf("%s:%d:%d-%d@%d", k.topic, k.partition, r.first.Offset, r.last.Offset, r.first.Time.UnixMilli()))
	}
	slices.Sort(parts)
	tok := strings.Join(parts, ",")
	if len(tok) > 200 {
		sum := sha256.Sum256([]byte(tok))
		tok = "sha256:" + hex.EncodeToString(sum[:])
	}
	return tok
}

// writer stores batches in ClickHouse through the native batch API.
type writer struct {
	conn driver.Conn
}

// write inserts every part of b. Each insert carries the batch's deduplication token, so a retry
// of a part that did land is dropped by ClickHouse, materialized views included.
func (w *writer) write(ctx context.Context, b *batch) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token":                         b.dedupToken(),
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}))
	if len(b.events) > 0 {
		if err := w.send(ctx, insertAuthEvents, len(b.events), func(bt driver.Batch, i int) error {
			e := &b.events[i]
			return bt.Append(e.TS, e.KeyID, e.KeyFingerprint, e.ClientID, string(e.Outcome), e.Status, ipColumn(e),
				e.UserAgent, e.Method, e.Route, e.RequestID, e.Gateway, e.partition, e.offset)
		}); err != nil {
			return fmt.Errorf("ingest: insert %d auth events: %w", len(b.events), err)
		}
	}
	if len(b.lifecycle) > 0 {
		if err := w.send(ctx, insertLifecycle, len(b.lifecycle), func(bt driver.Batch, i int) error {
			e := &b.lifecycle[i]
			return bt.Append(e.TS, string(e.Type), e.KeyID, e.ClientID, e.NewKeyID, e.GraceUntil, e.Reason, e.partition, e.offset)
		}); err != nil {
			return fmt.Errorf("ingest: insert %d lifecycle events: %w", len(b.lifecycle), err)
		}
	}
	if len(b.deadLetters) > 0 {
		if err := w.send(ctx, insertDeadLetters, len(b.deadLetters), func(bt driver.Batch, i int) error {
			d := &b.deadLetters[i]
			return bt.Append(d.Topic, d.Partition, d.Offset, d.Reason, d.Error, d.Excerpt, uint32(d.Size))
		}); err != nil {
			return fmt.Errorf("ingest: insert %d dead letters: %w", len(b.deadLetters), err)
		}
	}
	return nil
}

func (w *writer) send(ctx context.Context, query string, n int, row func(driver.Batch, int) error) error {
	bt, err := w.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	defer bt.Abort()
	for i := range n {
		if err := row(bt, i); err != nil {
			return err
		}
	}
	return bt.Send()
}

func ipColumn(e *storedEvent) net.IP {
	if !e.IP.IsValid() {
		return net.IPv6zero
	}
	return net.IP(e.IP.AsSlice())
}

// backoff is a capped exponential delay with full jitter.
type backoff struct {
	min, max time.Duration
	attempt  int
}

func (b *backoff) next() time.Duration {
	d := b.min << min(b.attempt, 20)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.attempt++
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (b *backoff) reset() { b.attempt = 0 }
