package ingest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// What the event store tells the packages that do not judge from raw events: ingest owns
// auth_events, dead_letters and the rollups ClickHouse builds on their inserts, and these
// functions are how action, digest, leakreport, readapi and the demo read them.

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

// KeyUse is what the event store says of a key's use: its requests and first and last request
// of all time (key_usage keeps every key ever used), and its last successful request within the
// rollups' retention (key_caller_hours), zero when none.
type KeyUse struct {
	ClientID            string // the client key_usage keeps for it (anyLast), "" when the gateway named none
	Requests            uint64
	FirstSeen, LastSeen time.Time
	LastOK              time.Time
}

// ReadKeyUse reads keyID's use; ok is false when no stored event used it.
func ReadKeyUse(ctx context.Context, conn driver.Conn, keyID string) (u KeyUse, ok bool, err error) {
	var n uint64
	if err := conn.QueryRow(ctx, `
SELECT count(), anyLast(client_id), sum(requests), min(first_seen), max(last_seen),
    (SELECT maxIf(last_ok, last_ok_s > 0) FROM key_caller_hours WHERE key_id = ?)
FROM key_usage
WHERE key_id = ?`, keyID, keyID).Scan(&n, &u.ClientID, &u.Requests, &u.FirstSeen, &u.LastSeen, &u.LastOK); err != nil {
		return KeyUse{}, false, fmt.Errorf("read the use of key %s from key_usage and key_caller_hours: %w", keyID, err)
	}
	if n == 0 {
		return KeyUse{}, false, nil
	}
	u.FirstSeen, u.LastSeen, u.LastOK = u.FirstSeen.UTC(), u.LastSeen.UTC(), unsetEpoch(u.LastOK)
	return u, true, nil
}

// capped cuts rows, read with a LIMIT of limit+1, to limit; more says whether there was one more.
func capped[T any](rows []T, limit int) (_ []T, more bool) {
	if len(rows) > limit {
		return rows[:limit], true
	}
	return rows, false
}

// unsetEpoch turns the 1970-01-01 of an empty max into the zero time.
func unsetEpoch(t time.Time) time.Time {
	if t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}

// KeyCaller is one caller of a key within a window: a client, or, for the requests whose client
// the gateway did not name, an address and user agent. NewKeyRequests are the same caller's
// requests with the key's successor in the window (the same client, or the same address and user
// agent without a client).
type KeyCaller struct {
	ClientID, Addr, UserAgent string
	Requests, Failures        uint64
	LastSeen, LastOK          time.Time // LastOK is zero when every request of the window was refused
	NewKeyRequests            uint64
}

// KeyCallers returns the limit busiest callers of keyID since a time (from the top of its hour,
// key_caller_hours's granularity), busiest first, with their requests on newKeyID ("" for none);
// more is true when there were more callers than limit.
func KeyCallers(ctx context.Context, conn driver.Conn, keyID, newKeyID string, since time.Time, limit int) (callers []KeyCaller, more bool, err error) {
	rows, err := conn.Query(ctx, `
SELECT
    client_id,
    if(client_id = '', replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', ''), '') AS addr,
    if(client_id = '', toString(user_agent), '') AS agent,
    sumIf(requests, key_id = ?) AS key_requests,
    sumIf(failures, key_id = ?) AS key_failures,
    maxIf(last_seen, key_id = ?) AS key_last_seen,
    maxIf(last_ok, key_id = ? AND last_ok_s > 0) AS key_last_ok,
    sumIf(requests, key_id = ?) AS new_key_requests
FROM key_caller_hours
WHERE key_id IN (?, ?) AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY client_id, addr, agent
HAVING key_requests > 0
ORDER BY key_requests DESC, client_id, addr, agent
LIMIT ?`, keyID, keyID, keyID, keyID, newKeyID, keyID, newKeyID, since.UnixMilli(), limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read the callers of key %s since %s from key_caller_hours: %w", keyID, since.UTC().Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var c KeyCaller
		if err := rows.Scan(&c.ClientID, &c.Addr, &c.UserAgent, &c.Requests, &c.Failures, &c.LastSeen, &c.LastOK, &c.NewKeyRequests); err != nil {
			return nil, false, fmt.Errorf("read the callers of key %s from key_caller_hours: %w", keyID, err)
		}
		c.LastSeen, c.LastOK = c.LastSeen.UTC(), unsetEpoch(c.LastOK)
		callers = append(callers, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the callers of key %s from key_caller_hours: %w", keyID, err)
	}
	callers, more = capped(callers, limit)
	return callers, more, nil
}

// KeyNetwork is a network a key was used from: AS<number> when the ASN is known, else the /24
// or /48 of the address (key_networks_1d).
type KeyNetwork struct {
	Network            string
	ASN                uint32
	ASOrg              string
	Requests, Failures uint64
	LastSeen           time.Time
}

// KeyCountry is a country a key was used from and its requests.
type KeyCountry struct {
	Country  string
	Requests uint64
}

// KeyNetworks returns the limit busiest networks keyID was used from since a time's day (UTC),
// busiest first; more is true when there were more.
func KeyNetworks(ctx context.Context, conn driver.Conn, keyID string, since time.Time, limit int) (nets []KeyNetwork, more bool, err error) {
	rows, err := conn.Query(ctx, `
SELECT network, max(asn), anyLast(as_org), sum(requests) AS net_requests, sum(failures), max(last_seen)
FROM key_networks_1d
WHERE key_id = ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY network
ORDER BY net_requests DESC, network
LIMIT ?`, keyID, since.UnixMilli(), limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read the networks of key %s since %s from key_networks_1d: %w", keyID, since.UTC().Format(time.DateOnly), err)
	}
	defer rows.Close()
	for rows.Next() {
		var n KeyNetwork
		if err := rows.Scan(&n.Network, &n.ASN, &n.ASOrg, &n.Requests, &n.Failures, &n.LastSeen); err != nil {
			return nil, false, fmt.Errorf("read the networks of key %s from key_networks_1d: %w", keyID, err)
		}
		n.LastSeen = n.LastSeen.UTC()
		nets = append(nets, n)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the networks of key %s from key_networks_1d: %w", keyID, err)
	}
	nets, more = capped(nets, limit)
	return nets, more, nil
}

// KeyCountries returns the limit busiest countries keyID was used from since a time's day (UTC),
// busiest first, leaving out requests whose country the geo database did not know; more is true
// when there were more.
func KeyCountries(ctx context.Context, conn driver.Conn, keyID string, since time.Time, limit int) (countries []KeyCountry, more bool, err error) {
	rows, err := conn.Query(ctx, `
SELECT country, sum(requests) AS country_requests
FROM key_networks_1d
WHERE key_id = ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND country != ''
GROUP BY country
ORDER BY country_requests DESC, country
LIMIT ?`, keyID, since.UnixMilli(), limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read the countries of key %s since %s from key_networks_1d: %w", keyID, since.UTC().Format(time.DateOnly), err)
	}
	defer rows.Close()
	for rows.Next() {
		var c KeyCountry
		if err := rows.Scan(&c.Country, &c.Requests); err != nil {
			return nil, false, fmt.Errorf("read the countries of key %s from key_networks_1d: %w", keyID, err)
		}
		countries = append(countries, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the countries of key %s from key_networks_1d: %w", keyID, err)
	}
	countries, more = capped(countries, limit)
	return countries, more, nil
}

// BurnDownPoint is one client's requests with a rotation's old and new key in one step of time.
type BurnDownPoint struct {
	At                       time.Time
	OldRequests, NewRequests uint64
}

// ClientBurnDown is one client's requests with a rotation's old and new key in a window, and per
// step of time that had any.
type ClientBurnDown struct {
	ClientID                 string // "" for the requests whose client the gateway did not name
	OldRequests, NewRequests uint64
	Points                   []BurnDownPoint
}

// RotationBurnDown reads, for the maxClients busiest clients of oldKey and newKey since a time
// (from the top of its hour; RotationTraffic), their requests with each key in total and per step (a whole number
// of hours; steps are aligned to the Unix epoch, so a day is a UTC day), busiest first; only the
// steps with requests are returned. more is true when more clients called either key.
func RotationBurnDown(ctx context.Context, conn driver.Conn, oldKey, newKey string, since time.Time, step time.Duration, maxClients int) (clients []ClientBurnDown, more bool, err error) {
	if step < time.Hour || step%time.Hour != 0 {
		return nil, false, fmt.Errorf("burn-down of %s > %s: step %s is not a whole number of hours", oldKey, newKey, step)
	}
	fail := func(err error) ([]ClientBurnDown, bool, error) {
		return nil, false, fmt.Errorf("read the burn-down of %s > %s since %s from key_caller_hours: %w", oldKey, newKey, since.UTC().Format(time.RFC3339), err)
	}
	traffic, err := RotationTraffic(ctx, conn, oldKey, newKey, since)
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(traffic, func(a, b ClientTraffic) int {
		return cmp.Or(cmp.Compare(b.OldRequests+b.NewRequests, a.OldRequests+a.NewRequests), cmp.Compare(a.ClientID, b.ClientID))
	})
	if len(traffic) > maxClients {
		traffic, more = traffic[:maxClients], true
	}
	if len(traffic) == 0 {
		return nil, false, nil
	}
	byClient := map[string]int{}
	ids := make([]string, 0, len(traffic))
	for _, c := range traffic {
		byClient[c.ClientID] = len(clients)
		ids = append(ids, c.ClientID)
		clients = append(clients, ClientBurnDown{ClientID: c.ClientID, OldRequests: c.OldRequests, NewRequests: c.NewRequests})
	}
	secs := int64(step / time.Second)
	rows, err := conn.Query(ctx, `
SELECT client_id, toDateTime(intDiv(toUnixTimestamp(hour), ?) * ?, 'UTC') AS step_start,
    sumIf(requests, key_id = ?) AS old_requests, sumIf(requests, key_id = ?) AS new_requests
FROM key_caller_hours
WHERE key_id IN (?, ?) AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND client_id IN ?
GROUP BY client_id, step_start
ORDER BY client_id, step_start`, secs, secs, oldKey, newKey, oldKey, newKey, since.UnixMilli(), ids)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var client string
		var p BurnDownPoint
		if err := rows.Scan(&client, &p.At, &p.OldRequests, &p.NewRequests); err != nil {
			return fail(err)
		}
		if i, ok := byClient[client]; ok {
			p.At = p.At.UTC()
			clients[i].Points = append(clients[i].Points, p)
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return clients, more, nil
}
