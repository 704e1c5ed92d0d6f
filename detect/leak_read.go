package detect

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// leakSelectNewPlaceKeys finds the keys that used, in the window, a (network, country) they had not
// used in the baseline: the only keys that can show a new network, a new country, a revoked key's
// new network or impossible travel (which needs a new country). A day's first_seen is its earliest
// event, so "first_seen on the window's day(s) is in the window" is exact although rows are daily;
// only those few keys are then looked up in the baseline's earlier days (through the primary key;
// a key-level IN prunes there, a tuple-level one does not), so the cost follows the window, not
// the baseline. Arguments: window start, now, window start, now, baseline start, window start.
const leakSelectNewPlaceKeys = `
WITH recent AS
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
    GROUP BY key_id, network, country
    HAVING min(first_seen) >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND min(first_seen) < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
)
SELECT DISTINCT key_id
FROM recent
WHERE (key_id, network, country) NOT IN
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE key_id IN (SELECT key_id FROM recent) AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day < toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
)`

// leakSelectPlaces reads every (network, country) of the given keys over the baseline and the
// window: first and last seen, requests (all, and those of whole days before the window's first day, which
// are baseline traffic for sure) and failures. A place first seen in the window has all its
// requests in the window. Arguments: window start, keys, baseline start, now.
const leakSelectPlaces = `
SELECT
    key_id, network, country, anyLast(asn), anyLast(as_org),
    min(first_seen), max(last_seen), sum(requests), sum(failures),
    sumIf(requests, day < toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')))
FROM key_networks_1d
WHERE key_id IN ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id, network, country`

// leakSelectSamples reads sample addresses and user agents of the given keys' places on the
// window's day(s), which hold every event of a place first seen in the window. IPv4 addresses are
// shown without their ::ffff: prefix. Arguments: keys, window start, now.
const leakSelectSamples = `
SELECT
    key_id, network, country,
    arrayMap(ip -> replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', ''), groupUniqArrayMerge(5)(sample_ips)),
    groupUniqArrayMerge(5)(sample_uas)
FROM key_networks_1d
WHERE key_id IN ? AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id, network, country`

// leakSelectClients reads the client of the given keys and every key of those clients (for
// inheritance). key_usage holds one row per key. Arguments: keys, keys.
const leakSelectClients = `
SELECT key_id, anyLast(client_id) AS client
FROM key_usage
GROUP BY key_id
HAVING key_id IN ? OR (client != '' AND client IN (SELECT anyLast(client_id) FROM key_usage WHERE key_id IN ? GROUP BY key_id))`

// leakSelectWindowRequests reads each key's requests in the window, for shares. minute is a
// DateTime, compared with the window's start and now at the whole second: a run in the first
// second of a minute does not count that minute, and (with a window of whole minutes) counts the
// one its window starts in. Arguments: keys, window start, now.
const leakSelectWindowRequests = `
SELECT key_id, sum(requests)
FROM auth_events_1m
WHERE key_id IN ? AND minute >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND minute < toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id`

// Fan-out: key_ips_1h holds per key and hour a distinct-address state. The IPHours job finalizes
// completed hours into key_ip_hours (plain counts), so that a baseline is a read of numbers, not 720
// state merges per key; the detector reads the hours the job has not finalized yet from key_ips_1h.
// Events that arrive after their hour was finalized are missing from the baseline only.
const (
	// leakSelectLastIPHour is answered from part metadata (min/max of the partition key's column),
	// without reading the table; the caller ignores anything before the baseline.
	leakSelectLastIPHour = `SELECT max(hour) FROM key_ip_hours`
	// leakSelectJudgedIPHours reads the distinct addresses of the last complete hour and the current
	// one, for keys with enough of them. Arguments: last complete hour, current hour (whole hours),
	// minimum.
	leakSelectJudgedIPHours = `
SELECT key_id, hour, uniqMerge(distinct_ips) AS ips
FROM key_ips_1h
WHERE hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY key_id, hour
HAVING ips >= ?`
	// leakSelectIPBaseline reads the given keys' hourly distinct-address counts over the baseline, by
	// hour of day: the finalized hours from key_ip_hours, the later ones (from the first hour not
	// finalized) from key_ips_1h. An hour finalized twice (two replicas at once) counts twice until
	// the table merges it away; the median does not notice, and not deduplicating halves the query's
	// cost. Arguments: keys, baseline start (hour is a DateTime: compared at the whole second), first
	// hour not finalized, keys, baseline start, first hour not finalized, end (exclusive, a whole
	// hour), end.
	leakSelectIPBaseline = `
SELECT key_id, toHour(hour) AS hod, groupArray(distinct_ips)
FROM
(
    SELECT key_id, hour, distinct_ips
    FROM key_ip_hours
    WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    UNION ALL
    SELECT key_id, hour, toUInt32(uniqMerge(distinct_ips)) AS distinct_ips
    FROM key_ips_1h
    WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
        AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    GROUP BY key_id, hour
)
WHERE hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
GROUP BY key_id, hod`
)

func (d *Leak) readClients(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectClients, keys, keys)
	if err != nil {
		return fmt.Errorf("read clients of %d keys from key_usage: %w", len(keys), err)
	}
	defer rows.Close()
	r.clients, r.clientKeys = map[string]string{}, map[string][]string{}
	for rows.Next() {
		var key, client string
		if err := rows.Scan(&key, &client); err != nil {
			return fmt.Errorf("read clients from key_usage: %w", err)
		}
		r.clients[key] = client
		if client != "" {
			r.clientKeys[client] = append(r.clientKeys[client], key)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read clients from key_usage: %w", err)
	}
	for _, ks := range r.clientKeys {
		slices.Sort(ks)
	}
	return nil
}

func (d *Leak) readPlaces(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectPlaces, r.windowStart.UnixMilli(), keys, r.baseStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read networks of %d keys from key_networks_1d: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var p leakUse
		if err := rows.Scan(&key, &p.network, &p.country, &p.asn, &p.asOrg, &p.first, &p.last,
			&p.requests, &p.failures, &p.beforeWindowDay); err != nil {
			return fmt.Errorf("read networks from key_networks_1d: %w", err)
		}
		p.first, p.last = p.first.UTC(), p.last.UTC()
		r.places[key] = append(r.places[key], p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read networks from key_networks_1d: %w", err)
	}
	return nil
}

// readSamples fills in the sample addresses and user agents of the keys' places used in the window.
func (d *Leak) readSamples(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectSamples, keys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read samples of %d keys from key_networks_1d: %w", len(keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, network, country string
		var ips, uas []string
		if err := rows.Scan(&key, &network, &country, &ips, &uas); err != nil {
			return fmt.Errorf("read samples from key_networks_1d: %w", err)
		}
		for i, p := range r.places[key] {
			if p.network == network && p.country == country {
				slices.Sort(ips)
				slices.Sort(uas)
				r.places[key][i].sampleIPs, r.places[key][i].sampleUAs = ips, uas
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read samples from key_networks_1d: %w", err)
	}
	return nil
}

func (d *Leak) readWindowRequests(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectWindowRequests, keys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read window requests of %d keys from auth_events_1m: %w", len(keys), err)
	}
	defer rows.Close()
	r.windowRequests = map[string]uint64{}
	for rows.Next() {
		var key string
		var n uint64
		if err := rows.Scan(&key, &n); err != nil {
			return fmt.Errorf("read window requests from auth_events_1m: %w", err)
		}
		r.windowRequests[key] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read window requests from auth_events_1m: %w", err)
	}
	return nil
}

// readJudgedHours returns the keys' distinct addresses in the last complete hour and the current
// one, for the keys (of only, when it is not nil) with at least leakFanoutMinIPs in one of them.
func (d *Leak) readJudgedHours(ctx context.Context, now time.Time, only []string) (map[string][]leakHour, error) {
	current := now.Truncate(time.Hour)
	last := current.Add(-time.Hour)
	rows, err := d.conn.Query(ctx, leakSelectJudgedIPHours, last.UnixMilli(), current.UnixMilli(), uint64(leakFanoutMinIPs))
	if err != nil {
		return nil, fmt.Errorf("read distinct addresses of hours %s and %s from key_ips_1h: %w",
			last.Format(time.RFC3339), current.Format(time.RFC3339), err)
	}
	defer rows.Close()
	hours := map[string][]leakHour{}
	for rows.Next() {
		var key string
		var h leakHour
		if err := rows.Scan(&key, &h.hour, &h.ips); err != nil {
			return nil, fmt.Errorf("read distinct addresses from key_ips_1h: %w", err)
		}
		if only != nil && !slices.Contains(only, key) {
			continue
		}
		h.hour = h.hour.UTC()
		hours[key] = append(hours[key], h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read distinct addresses from key_ips_1h: %w", err)
	}
	return hours, nil
}

// ipBaselines returns each key's baseline hourly distinct-address counts by hour of day, for the
// hours from from to to (exclusive).
func (d *Leak) ipBaselines(ctx context.Context, keys []string, from, to time.Time) (map[string]map[int][]float64, error) {
	var recorded time.Time
	if err := d.conn.QueryRow(ctx, leakSelectLastIPHour).Scan(&recorded); err != nil {
		return nil, fmt.Errorf("read last finalized hour from key_ip_hours: %w", err)
	}
	unfinalized := recorded.UTC().Add(time.Hour)
	rows, err := d.conn.Query(ctx, leakSelectIPBaseline, keys, from.UnixMilli(), unfinalized.UnixMilli(),
		keys, from.UnixMilli(), unfinalized.UnixMilli(), to.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read hourly distinct addresses of %d keys from %s to %s: %w", len(keys),
			from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string]map[int][]float64{}
	for rows.Next() {
		var key string
		var hod uint8
		var ips []uint32
		if err := rows.Scan(&key, &hod, &ips); err != nil {
			return nil, fmt.Errorf("read hourly distinct addresses from key_ip_hours: %w", err)
		}
		if out[key] == nil {
			out[key] = map[int][]float64{}
		}
		for _, n := range ips {
			out[key][int(hod)] = append(out[key][int(hod)], float64(n))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read hourly distinct addresses from key_ip_hours: %w", err)
	}
	return out, nil
}

// leakQueryStrings runs q and returns its single String column.
func leakQueryStrings(ctx context.Context, conn driver.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
