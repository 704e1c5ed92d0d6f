package detect

import (
	"context"
	"fmt"
	"time"
)

// selectKeyUsage reads when every key seen in traffic was first and last used. key_usage holds one
// row per key once merged, so the whole table is small.
const selectKeyUsage = `
SELECT key_id, anyLast(client_id), sum(requests), min(first_seen), max(last_seen)
FROM key_usage
GROUP BY key_id`

type keyUsage struct {
	clientID            string
	requests            uint64
	firstSeen, lastSeen time.Time
}

func (d *Hygiene) usage(ctx context.Context) (map[string]keyUsage, error) {
	rows, err := d.conn.Query(ctx, selectKeyUsage)
	if err != nil {
		return nil, fmt.Errorf("read key_usage: %w", err)
	}
	defer rows.Close()
	out := map[string]keyUsage{}
	for rows.Next() {
		var id string
		var u keyUsage
		if err := rows.Scan(&id, &u.clientID, &u.requests, &u.firstSeen, &u.lastSeen); err != nil {
			return nil, fmt.Errorf("read key_usage: %w", err)
		}
		u.firstSeen, u.lastSeen = u.firstSeen.UTC(), u.lastSeen.UTC()
		out[id] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read key_usage: %w", err)
	}
	return out, nil
}

// refusals returns, per key refused in the last day, its forbidden requests over the scope history
// per method and route (readForbiddenRoutes, days counted back from now).
func (d *Hygiene) refusals(ctx context.Context, now time.Time) (map[string]map[[2]string]leakScopeRouteHistory, error) {
	dayAgo := now.Add(-24 * time.Hour)
	keys, err := queryStrings(ctx, d.conn, leakSelectForbiddenKeys, dayAgo.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys answered forbidden since %s in key_refusals_1h: %w", dayAgo.Format(time.RFC3339), err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return readForbiddenRoutes(ctx, d.conn, keys, now.Add(-d.scopeHistory), now)
}
