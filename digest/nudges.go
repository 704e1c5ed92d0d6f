package digest

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Nudged reports whether the "safe to retire" message of a rotation was sent to any channel.
func Nudged(ctx context.Context, conn driver.Conn, rotationID string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM rotation_nudges WHERE rotation_id = ? AND kind = ?`, rotationID, kindSafeToRetire).Scan(&n); err != nil {
		return false, fmt.Errorf("look up the safe-to-retire message of rotation %s: %w", rotationID, err)
	}
	return n > 0, nil
}
