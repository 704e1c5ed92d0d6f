package action

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier is the part of a ClickHouse connection the record of sent actions is read through.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Sent is one action keywatch sent to the key-management system, as the report counts them.
type Sent struct {
	KeyID, Kind string
	// At is when the receiver accepted it; Queued when its body was fixed, before the first attempt.
	At, Queued time.Time
}

// ReadSent returns every revoke and rollback keywatch sent, oldest first. A sent action's last
// version is written when the receiver accepted it, so its updated_at is when it took effect. The
// table is small (the hourly cap bounds it) and has no TTL.
func ReadSent(ctx context.Context, q Querier) ([]Sent, error) {
	rows, err := q.Query(ctx, `
SELECT key_id, kind, updated_at, queued_at
FROM actions FINAL
WHERE kind IN ('revoke', 'extend_grace', 'reactivate') AND state = 'sent'
ORDER BY updated_at, id`)
	if err != nil {
		return nil, fmt.Errorf("read the sent actions: %w", err)
	}
	defer rows.Close()
	var out []Sent
	for rows.Next() {
		var s Sent
		if err := rows.Scan(&s.KeyID, &s.Kind, &s.At, &s.Queued); err != nil {
			return nil, fmt.Errorf("read the sent actions: %w", err)
		}
		s.At, s.Queued = s.At.UTC(), s.Queued.UTC()
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the sent actions: %w", err)
	}
	return out, nil
}
