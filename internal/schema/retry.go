package schema

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/backoff"
)

// Retry runs op until it succeeds, ClickHouse answers with an error (the same statement would
// fail again), ctx ends or within has passed since the first try. In between it waits with
// exponential backoff from 200 ms to 10 s: an unreachable server is waited for, never given up on
// at the first refused connection.
func Retry(ctx context.Context, within time.Duration, op func(context.Context) error) error {
	waits := backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second}.Waits()
	deadline := time.Now().Add(within)
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		var ex *clickhouse.Exception
		if errors.As(err, &ex) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if !backoff.Sleep(ctx, min(waits.Next(), time.Until(deadline)+time.Millisecond)) {
			return err
		}
	}
}

// WithInsertToken returns ctx with an insert_deduplication_token: a retried insert that had in
// fact arrived is then dropped by ClickHouse instead of stored twice.
func WithInsertToken(ctx context.Context, token string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token}))
}

// InsertRow stores row (a struct whose fields carry ch tags) with insert, an INSERT INTO t
// (columns) statement, as one insert under the deduplication token, retrying while ClickHouse is
// unreachable for up to a minute (Retry): an outbox's one-row-per-version writes.
func InsertRow(ctx context.Context, conn driver.Conn, insert, token string, row any) error {
	return Retry(WithInsertToken(ctx, token), time.Minute, func(ctx context.Context) error {
		b, err := conn.PrepareBatch(ctx, insert)
		if err != nil {
			return err
		}
		defer b.Abort()
		if err := b.AppendStruct(row); err != nil {
			return err
		}
		return b.Send()
	})
}
