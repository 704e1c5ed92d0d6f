package schema

import (
	"context"
	"errors"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Retry runs op until it succeeds, ClickHouse answers with an error (the same statement would
// fail again), ctx ends or within has passed since the first try. In between it waits with
// exponential backoff from 200 ms to 10 s: an unreachable server is waited for, never given up on
// at the first refused connection.
func Retry(ctx context.Context, within time.Duration, op func(context.Context) error) error {
	wait := 200 * time.Millisecond
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
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(wait, time.Until(deadline)+time.Millisecond)):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// WithInsertToken returns ctx with an insert_deduplication_token: a retried insert that had in
// fact arrived is then dropped by ClickHouse instead of stored twice.
func WithInsertToken(ctx context.Context, token string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token}))
}
