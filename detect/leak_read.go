package detect

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// leakSelectNewPlaceKeys finds the keys that used, in the window, a (network, country) first seen
// within new_for and not before it in the baseline: the only keys that can show a new network, a
// new country or a revoked key's new network. A day's first_seen is its earliest event, so
// "first_seen on the horizon's day(s) is in the horizon" is exact although rows are daily; only
// those few keys are then looked up in the baseline's earlier days (through the primary key; a
// key-level IN prunes there, a tuple-level one does not), so the cost follows the horizon, not the
// baseline. Arguments: horizon start, now, horizon start, now, window start, baseline start,
// horizon start.
const leakSelectNewPlaceKeys = `
WITH recent AS
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day <= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
    GROUP BY key_id, network, country
    HAVING min(first_seen) >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND min(first_seen) < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
        AND max(last_seen) >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
)
SELECT DISTINCT key_id
FROM recent
WHERE (key_id, network, country) NOT IN
(
    SELECT key_id, network, country
    FROM key_networks_1d
    WHERE key_id IN (SELECT key_id FROM recent) AND day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND day < toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
)`

// leakNetworkOfCaller is a key_caller_hours row's network as key_networks_1d writes it (migration
// 0007): AS<asn> when the ASN is known, else the /24 of an IPv4 or the /48 of an IPv6 address.
const leakNetworkOfCaller = `if(asn != 0, concat('AS', toString(asn)),
    if(startsWith(cutIPv6(ip, 10, 1), '::ffff:'), concat(substring(cutIPv6(ip, 10, 1), 8), '/24'), concat(cutIPv6(ip, 10, 1), '/48')))`

// leakSelectActivity reads, per (network, country) of the given keys since the horizon's start,
// the hours it was active and its requests in the hours the window touches, from the hourly
// callers (through the primary key). Arguments: window start, keys, horizon start.
const leakSelectActivity = `
SELECT key_id, network, country, groupUniqArray(hour), sumIf(requests, hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')))
FROM
(
    SELECT key_id, hour, country, requests, ` + leakNetworkOfCaller + ` AS network
    FROM key_caller_hours
    WHERE key_id IN ? AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
)
GROUP BY key_id, network, country`

// leakSelectTravelKeys finds the keys used from at least two countries since the travel range's
// start (daily rows: a few per key and day). Arguments: range start, range start.
const leakSelectTravelKeys = `
SELECT key_id
FROM key_networks_1d
WHERE day >= toDate(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id
HAVING uniqExactIf(country, country != '' AND last_seen >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')) >= 2`

// leakSelectCountrySpans reads the given keys' use per country since the travel range's start:
// each hourly caller row (address, user agent, hour) with its first and last event, which are
// to the second; only for the keys with at most leakTravelMaxCallers callers there. Arguments: keys, range
// start, caller limit, keys, range start, range start, now.
const leakSelectCountrySpans = `
SELECT key_id, country, min(first_seen) AS first, max(last_seen) AS last, sum(requests)
FROM key_caller_hours
WHERE key_id IN
(
    SELECT key_id
    FROM key_caller_hours
    WHERE key_id IN ? AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
    GROUP BY key_id
    HAVING uniqExact(ip, user_agent) <= ?
)
    AND key_id IN ? AND hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND country != ''
GROUP BY key_id, client_id, ip, user_agent, hour, country
HAVING last >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND first < fromUnixTimestamp64Milli(toInt64(?), 'UTC')`

// leakSelectHistory reads how the given keys were used over the baseline before the horizon, hour
// by hour: the hours with traffic, those with two countries or more at once, (capped, as only small
// numbers matter) the user-agent families and networks, and the switches from one country to
// another between hours of one country each at most leakTravelSwitchWithin apart, as "DE>US".
// Arguments: switch distance in seconds, keys, from, to.
const leakSelectHistory = `
SELECT key_id, count(), countIf(length(countries) > 1),
    length(groupUniqArrayArray(16)(families)), length(groupUniqArrayArray(64)(networks)),
    groupUniqArrayIf(32)(concat(prev[1], '>', countries[1]),
        length(countries) = 1 AND length(prev) = 1 AND prev != countries AND dateDiff('second', prev_hour, hour) <= ?)
FROM
(
    SELECT key_id, hour, countries, families, networks,
        lagInFrame(countries) OVER w AS prev, lagInFrame(hour) OVER w AS prev_hour
    FROM
    (
        SELECT key_id, hour,
            groupUniqArrayIf(country, country != '') AS countries,
            groupUniqArray(16)(lower(splitByChar('/', toString(user_agent))[1])) AS families,
            groupUniqArray(64)(` + leakNetworkOfCaller + `) AS networks
        FROM key_caller_hours
        WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
        GROUP BY key_id, hour
    )
    WINDOW w AS (PARTITION BY key_id ORDER BY hour ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
GROUP BY key_id`

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
FROM key_minutes
WHERE key_id IN ? AND minute >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND minute < toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
GROUP BY key_id`

// Fan-out: key_ips_1h holds per key and hour a distinct-address state. The IPHours job finalizes
// completed hours into key_ip_hours (plain counts) once allowed_lateness has passed, so that a
// baseline is a read of numbers, not 720 state merges per key; the detector reads the hours the job
// has not finalized yet from key_ips_1h. The job finalizes an hour again when events arrived for it
// later (ip_hours.go).
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
	// finalized) from key_ips_1h. An hour written twice (finalized again after late events, or by two
	// replicas at once) has two rows until the table merges them: each hour's highest count is read,
	// as late events add addresses, never remove any. Arguments: keys, baseline start (hour is a
	// DateTime: compared at the whole second), first hour not finalized, keys, baseline start, first
	// hour not finalized, end (exclusive, a whole hour), end.
	leakSelectIPBaseline = `
SELECT key_id, toHour(hour) AS hod, groupArray(distinct_ips)
FROM
(
    SELECT key_id, hour, max(distinct_ips) AS distinct_ips
    FROM key_ip_hours
    WHERE key_id IN ? AND hour >= toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    GROUP BY key_id, hour
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

// readActivity fills in the hours active and the window's requests of the keys' places since the
// horizon's start.
func (d *Leak) readActivity(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectActivity, r.windowStart.UnixMilli(), keys, r.newStart.UnixMilli())
	if err != nil {
		return fmt.Errorf("read hours active of %d keys since %s from key_caller_hours: %w", len(keys), r.newStart.Format(time.RFC3339), err)
	}
	defer rows.Close()
	r.activity = map[string]map[leakPlaceID]leakActivity{}
	for rows.Next() {
		var key string
		var id leakPlaceID
		var a leakActivity
		if err := rows.Scan(&key, &id.network, &id.country, &a.hours, &a.windowRequests); err != nil {
			return fmt.Errorf("read hours active from key_caller_hours: %w", err)
		}
		if r.activity[key] == nil {
			r.activity[key] = map[leakPlaceID]leakActivity{}
		}
		r.activity[key][id] = a
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read hours active from key_caller_hours: %w", err)
	}
	return nil
}

// readTravel finds the keys used from two countries or more since the travel range's start, reads
// their use per country and hands over to leakHops; for the keys with a hop it reads their
// history (readHistory). A score_impossible_travel of 0 turns it off.
func (d *Leak) readTravel(ctx context.Context, r *leakRun) error {
	r.hops, r.history = map[string][]LeakTravel{}, map[string]LeakHistory{}
	if d.cfg.ScoreImpossibleTravel <= 0 {
		return nil
	}
	from := r.windowStart.Add(-leakTravelLookback)
	keys, err := queryStrings(ctx, d.conn, leakSelectTravelKeys, from.UnixMilli(), from.UnixMilli())
	if err != nil {
		return fmt.Errorf("find keys used from two countries since %s in key_networks_1d: %w", from.Format(time.RFC3339), err)
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	rows, err := d.conn.Query(ctx, leakSelectCountrySpans, keys, from.UnixMilli(), uint64(leakTravelMaxCallers),
		keys, from.UnixMilli(), from.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return fmt.Errorf("read countries of %d keys since %s from key_caller_hours: %w", len(keys), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	spans := map[string][]leakSpan{}
	for rows.Next() {
		var key string
		var sp leakSpan
		if err := rows.Scan(&key, &sp.country, &sp.first, &sp.last, &sp.requests); err != nil {
			return fmt.Errorf("read countries from key_caller_hours: %w", err)
		}
		sp.first, sp.last = sp.first.UTC(), sp.last.UTC()
		spans[key] = append(spans[key], sp)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read countries from key_caller_hours: %w", err)
	}
	var withHops []string
	for key, ss := range spans {
		if hops := leakHops(ss, r.windowStart, uint64(r.cfg.MinRequests)); len(hops) > 0 {
			r.hops[key] = hops
			withHops = append(withHops, key)
		}
	}
	if len(withHops) == 0 {
		return nil
	}
	slices.Sort(withHops)
	return d.readHistory(ctx, r, withHops)
}

// readHistory reads how the keys were used hour by hour over the baseline before the horizon.
func (d *Leak) readHistory(ctx context.Context, r *leakRun, keys []string) error {
	rows, err := d.conn.Query(ctx, leakSelectHistory, int64(leakTravelSwitchWithin/time.Second), keys, r.baseStart.UnixMilli(), r.newStart.UnixMilli())
	if err != nil {
		return fmt.Errorf("read history of %d keys from %s to %s from key_caller_hours: %w", len(keys),
			r.baseStart.Format(time.RFC3339), r.newStart.Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var h LeakHistory
		var hours, concurrent uint64
		var families, networks uint64
		var switches []string
		if err := rows.Scan(&key, &hours, &concurrent, &families, &networks, &switches); err != nil {
			return fmt.Errorf("read history from key_caller_hours: %w", err)
		}
		h.Hours, h.HoursTwoCountries, h.UserAgentFamilies, h.Networks = int(hours), int(concurrent), int(families), int(networks)
		slices.Sort(switches)
		h.Switches = switches
		r.history[key] = h
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read history from key_caller_hours: %w", err)
	}
	return nil
}

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
		return fmt.Errorf("read window requests of %d keys from key_minutes: %w", len(keys), err)
	}
	defer rows.Close()
	r.windowRequests = map[string]uint64{}
	for rows.Next() {
		var key string
		var n uint64
		if err := rows.Scan(&key, &n); err != nil {
			return fmt.Errorf("read window requests from key_minutes: %w", err)
		}
		r.windowRequests[key] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read window requests from key_minutes: %w", err)
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
