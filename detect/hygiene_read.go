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

// hygieneSelectRefusedKeys finds the keys answered forbidden in the last day, from the per-minute
// rollup: the only keys whose history of refusals is read. Arguments: a day ago, now.
const hygieneSelectRefusedKeys = `
SELECT DISTINCT key_id
FROM auth_events_1m
WHERE minute >= toStartOfMinute(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden' AND key_id != ''`

// hygieneSelectRefusals reads the given keys' forbidden requests over the scope history per method
// and route (raw events, through the primary key): requests, the days they came on (24 h periods
// back from now, 0 the latest), distinct callers (network and user agent, as scope probing tells
// them: leakScopeCaller), first and last. Arguments: now, keys, history start, now.
const hygieneSelectRefusals = `
SELECT key_id, method, route, count(),
    uniqExact(intDiv(toUnixTimestamp64Milli(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) - toUnixTimestamp64Milli(ts) - 1, 86400000)) AS days,
    toUInt64(min(intDiv(toUnixTimestamp64Milli(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) - toUnixTimestamp64Milli(ts) - 1, 86400000))) AS latest_day,
    uniqExact(` + leakScopeCaller + `, user_agent), min(ts), max(ts)
FROM auth_events
WHERE key_id IN ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'
GROUP BY key_id, method, route`

// hygieneRefusal is one route a key was refused on over the scope history.
type hygieneRefusal struct {
	method, route       string
	requests, callers   uint64
	days, latestDay     uint64
	firstSeen, lastSeen time.Time
}

// refusals returns, per key refused in the last day, its refusals over the scope history per route.
func (d *Hygiene) refusals(ctx context.Context, now time.Time) (map[string][]hygieneRefusal, error) {
	dayAgo := now.Add(-24 * time.Hour)
	rows, err := d.conn.Query(ctx, hygieneSelectRefusedKeys, dayAgo.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys answered forbidden since %s in auth_events_1m: %w", dayAgo.Format(time.RFC3339), err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find keys answered forbidden: %w", err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find keys answered forbidden: %w", err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	from := now.Add(-d.scopeHistory)
	rows, err = d.conn.Query(ctx, hygieneSelectRefusals, now.UnixMilli(), now.UnixMilli(), keys, from.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read the refusals of %d keys since %s from auth_events: %w", len(keys), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string][]hygieneRefusal{}
	for rows.Next() {
		var key string
		var r hygieneRefusal
		if err := rows.Scan(&key, &r.method, &r.route, &r.requests, &r.days, &r.latestDay, &r.callers, &r.firstSeen, &r.lastSeen); err != nil {
			return nil, fmt.Errorf("read refusals from auth_events: %w", err)
		}
		r.firstSeen, r.lastSeen = r.firstSeen.UTC(), r.lastSeen.UTC()
		out[key] = append(out[key], r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read refusals from auth_events: %w", err)
	}
	return out, nil
}
