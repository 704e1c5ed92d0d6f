package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// What the event store tells the packages that do not judge from raw events: ingest owns
// auth_events, dead_letters and the rollups ClickHouse builds on their inserts, and these
// functions are how action, digest, leakreport and the demo read them.

// Totals is how much the event store holds.
type Totals struct {
	Events, DeadLetters uint64
}

// ReadTotals counts the stored events and dead letters.
func ReadTotals(ctx context.Context, conn driver.Conn) (Totals, error) {
	var t Totals
	if err := conn.QueryRow(ctx, `SELECT (SELECT count() FROM auth_events), (SELECT count() FROM dead_letters)`).
		Scan(&t.Events, &t.DeadLetters); err != nil {
		return Totals{}, fmt.Errorf("count stored events and dead letters: %w", err)
	}
	return t, nil
}

// KeyUsed reports whether any stored event used keyID (key_usage keeps every key ever used).
func KeyUsed(ctx context.Context, conn driver.Conn, keyID string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM key_usage WHERE key_id = ?`, keyID).Scan(&n); err != nil {
		return false, fmt.Errorf("look up the use of key %s in key_usage: %w", keyID, err)
	}
	return n > 0, nil
}

// FingerprintKey is the key a raw-secret fingerprint was last seen with in traffic.
type FingerprintKey struct {
	KeyID, ClientID string
	LastSeen        time.Time
}

// KeysOfFingerprints returns the key of each fingerprint in fps that traffic has shown.
func KeysOfFingerprints(ctx context.Context, conn driver.Conn, fps []string) (map[string]FingerprintKey, error) {
	rows, err := conn.Query(ctx, `SELECT key_fingerprint, argMaxMerge(key_id), argMaxMerge(client_id), max(last_seen)
FROM key_fingerprints
WHERE key_fingerprint IN ?
GROUP BY key_fingerprint`, fps)
	if err != nil {
		return nil, fmt.Errorf("look up %d fingerprints in key_fingerprints: %w", len(fps), err)
	}
	defer rows.Close()
	out := map[string]FingerprintKey{}
	for rows.Next() {
		var fp string
		var k FingerprintKey
		if err := rows.Scan(&fp, &k.KeyID, &k.ClientID, &k.LastSeen); err != nil {
			return nil, fmt.Errorf("look up %d fingerprints in key_fingerprints: %w", len(fps), err)
		}
		out[fp] = k
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up %d fingerprints in key_fingerprints: %w", len(fps), err)
	}
	return out, nil
}

// ClientTraffic is one client's requests with a rotation's old and new key; LastSeen times are
// zero without requests.
type ClientTraffic struct {
	ClientID                 string
	OldRequests, NewRequests uint64
	OldLastSeen, NewLastSeen time.Time
}

// RotationTraffic reads each client's requests with oldKey and newKey since the top of the hour
// of since (key_caller_hours's granularity). Callers the gateway could not resolve are one client "".
func RotationTraffic(ctx context.Context, conn driver.Conn, oldKey, newKey string, since time.Time) ([]ClientTraffic, error) {
	const q = `
SELECT
    client_id,
    sumIf(requests, key_id = ?) AS old_requests,
    sumIf(requests, key_id = ?) AS new_requests,
    maxIf(last_seen, key_id = ?) AS old_last_seen,
    maxIf(last_seen, key_id = ?) AS new_last_seen
FROM key_caller_hours
WHERE key_id IN (?, ?) AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY client_id`
	rows, err := conn.Query(ctx, q, oldKey, newKey, oldKey, newKey, oldKey, newKey, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read the traffic of keys %s and %s since %s from key_caller_hours: %w", oldKey, newKey, since.UTC().Format(time.RFC3339), err)
	}
	defer rows.Close()
	var out []ClientTraffic
	for rows.Next() {
		var c ClientTraffic
		if err := rows.Scan(&c.ClientID, &c.OldRequests, &c.NewRequests, &c.OldLastSeen, &c.NewLastSeen); err != nil {
			return nil, fmt.Errorf("read the traffic of keys %s and %s from key_caller_hours: %w", oldKey, newKey, err)
		}
		if c.OldRequests == 0 {
			c.OldLastSeen = time.Time{}
		}
		if c.NewRequests == 0 {
			c.NewLastSeen = time.Time{}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the traffic of keys %s and %s from key_caller_hours: %w", oldKey, newKey, err)
	}
	return out, nil
}

// ShareOnKey is the share of the requests with key or other since a time that used key (0 when
// there were none).
func ShareOnKey(ctx context.Context, conn driver.Conn, key, other string, since time.Time) (float64, error) {
	var share float64
	if err := conn.QueryRow(ctx, `SELECT countIf(key_id = ?) / greatest(count(), 1) FROM auth_events
WHERE key_id IN (?, ?) AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')`, key, key, other, since.UnixMilli()).Scan(&share); err != nil {
		return 0, fmt.Errorf("read the share of key %s beside %s since %s: %w", key, other, since.UTC().Format(time.RFC3339), err)
	}
	return share, nil
}

// Caller is an address and user agent that called a key, and how often.
type Caller struct {
	Addr, UserAgent string
	Requests        uint64
}

// TopCallers returns the limit busiest callers of key since a time, busiest first.
func TopCallers(ctx context.Context, conn driver.Conn, key string, since time.Time, limit int) ([]Caller, error) {
	rows, err := conn.Query(ctx, `
SELECT replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', '') AS addr, user_agent, count() AS n
FROM auth_events
WHERE key_id = ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY addr, user_agent
ORDER BY n DESC, addr, user_agent
LIMIT ?`, key, since.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("read the callers of key %s since %s: %w", key, since.UTC().Format(time.RFC3339), err)
	}
	defer rows.Close()
	var out []Caller
	for rows.Next() {
		var c Caller
		if err := rows.Scan(&c.Addr, &c.UserAgent, &c.Requests); err != nil {
			return nil, fmt.Errorf("read the callers of key %s: %w", key, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
