package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LifecycleWriter stores lifecycle events that arrive outside Kafka (POST /v1/lifecycle). They
// carry no topic and partition -1, so ingest_progress never mistakes them for consumed offsets.
type LifecycleWriter struct {
	conn driver.Conn
}

// NewLifecycleWriter returns a writer over conn.
func NewLifecycleWriter(conn driver.Conn) *LifecycleWriter { return &LifecycleWriter{conn: conn} }

// StoreLifecycle stores ev. Its deduplication token is a digest of the event itself, so the same
// event posted again (a client's retry) is stored once.
func (w *LifecycleWriter) StoreLifecycle(ctx context.Context, ev LifecycleEvent) error {
	grace := ""
	if ev.GraceUntil != nil {
		grace = ev.GraceUntil.Format(time.RFC3339Nano)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s",
		ev.TS.Format(time.RFC3339Nano), ev.Type, ev.KeyID, ev.ClientID, ev.NewKeyID, grace, ev.Reason))
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token":                         "http:" + hex.EncodeToString(sum[:16]),
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}))
	b, err := w.conn.PrepareBatch(ctx, insertLifecycle)
	if err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	defer b.Abort()
	if err := b.Append(ev.TS, string(ev.Type), ev.KeyID, ev.ClientID, ev.NewKeyID, ev.GraceUntil, ev.Reason, "", int32(-1), int64(0)); err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("ingest: store lifecycle event of %s: %w", ev.KeyID, err)
	}
	return nil
}
