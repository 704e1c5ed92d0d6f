package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/rotation"
)

// insertLifecycle stores lifecycle events; lifecycleRow gives a row's values in its column order.
const insertLifecycle = `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until,
	reason, src_topic, src_partition, src_offset, version, expires_at, scopes)`

// lifecycleRow is ev as one insertLifecycle row, read from topic at partition and offset.
func lifecycleRow(ev rotation.Event, topic string, partition int32, offset int64) []any {
	scopes := ev.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return []any{ev.TS, ev.Type, ev.KeyID, ev.ClientID, ev.NewKeyID, nullTime(ev.GraceUntil), ev.Reason,
		topic, partition, offset, ev.Version, nullTime(ev.ExpiresAt), scopes}
}

// nullTime is t for a Nullable column: NULL when zero (the event did not say).
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// LifecycleWriter stores lifecycle events that arrive outside Kafka (POST /v1/lifecycle). They
// carry no topic and partition -1, so ingest_progress never mistakes them for consumed offsets.
type LifecycleWriter struct {
	conn driver.Conn
}

// NewLifecycleWriter returns a writer over conn.
func NewLifecycleWriter(conn driver.Conn) *LifecycleWriter { return &LifecycleWriter{conn: conn} }

// StoreLifecycle stores ev. Its deduplication token is a digest of the event itself, so the same
// event posted again (a client's retry) is stored once.
func (w *LifecycleWriter) StoreLifecycle(ctx context.Context, ev rotation.Event) error {
	grace := ""
	if !ev.GraceUntil.IsZero() {
		grace = ev.GraceUntil.Format(time.RFC3339Nano)
	}
	digest := fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s",
		ev.TS.Format(time.RFC3339Nano), ev.Type, ev.KeyID, ev.ClientID, ev.NewKeyID, grace, ev.Reason)
	// Metadata joins the digest only when the event has some, so an event without it keeps the
	// token it had before metadata existed.
	if ev.Version != "" || !ev.ExpiresAt.IsZero() || len(ev.Scopes) > 0 {
		expires := ""
		if !ev.ExpiresAt.IsZero() {
			expires = ev.ExpiresAt.Format(time.RFC3339Nano)
		}
		digest = fmt.Appendf(digest, "\x00%s\x00%s\x00%s", ev.Version, expires, strings.Join(ev.Scopes, " "))
	}
	sum := sha256.Sum256(digest)
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token":                         "http:" + hex.EncodeToString(sum[:16]),
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}))
	b, err := w.conn.PrepareBatch(ctx, insertLifecycle)
	if err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	defer b.Abort()
	if err := b.Append(lifecycleRow(ev, "", -1, 0)...); err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	return nil
}
