package detect

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/keywatch/keywatch/rotation"
)

// A spike is judged per case: one rotation step within AfterStep of now × one client, the
// rotation's own or any other with traffic on the rotation's keys since the step. A client's rates
// are of its requests with the rotation's old and new key, plus the keyless failures attributed to
// it: what the rotation changes. (Its other keys would dilute the rate, and cost a granule per key
// and day of baseline to read.) Each phase of a run is one query for all cases, which take the
// cases (or steps) as arrays that arrayZip turns into a small table to join on:
//
//  1. the short and long windows and the window since the step of every case (key_minutes,
//     the rotations' keys since their steps, AfterStep at most), and the failures without a known
//     key or client in the long windows' minutes (auth_events);
//  2. for the candidates only, the cases that would pass MinFailures and MinRate in both windows
//     (or the window since the step that carries a thin one) if every keyless failure were theirs:
//     their baseline (key_minutes, over Baseline and the same time in earlier weeks) and their
//     share of the keyless failures.
//
// A quiet cycle thus reads the rollup of the rotations' keys since their steps and the raw keyless
// failures of the last LongWindow; phase 2 reads a granule per key and day of baseline, for the
// candidates only. Keyless failures count in the long window only, the window since the step
// included (a raw lookup over AfterStep would cost every run a day of events).
//
// Authentication failures are invalid_key, expired_key, revoked_key and forbidden: what a key
// change can cause. rate_limited and error say nothing about the key and count as requests only.
const spikeFailures = `('invalid_key', 'expired_key', 'revoked_key', 'forbidden')`

// spikeSelectWindows counts, per step, the requests of every client on the rotation's keys in the
// step's short and long windows and since the step. The minute the step falls in counts to the
// windows; the minute now is in counts once now is past its first second (minute is a DateTime,
// compared with now at the whole second). Args: step index, key, short window start, long window
// start, step minute (arrays, one element per step and key; the times Unix milliseconds), then all
// keys and the overall window.
const spikeSelectWindows = `
WITH steps AS (
    SELECT toUInt32(t.1) AS idx, t.2 AS key_id, fromUnixTimestamp64Milli(toInt64(t.3), 'UTC') AS short_from, fromUnixTimestamp64Milli(toInt64(t.4), 'UTC') AS long_from,
        fromUnixTimestamp64Milli(toInt64(t.5), 'UTC') AS step_minute
    FROM (SELECT arrayJoin(arrayZip(?, ?, ?, ?, ?)) AS t))
SELECT steps.idx, a.client_id, a.key_id, toString(a.outcome) AS outcome,
    sumIf(a.requests, a.minute >= steps.short_from) AS short,
    sumIf(a.requests, a.minute >= steps.long_from) AS long,
    sum(a.requests) AS since
FROM key_minutes AS a INNER JOIN steps ON a.key_id = steps.key_id
WHERE a.key_id IN ? AND a.client_id != '' AND a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < toDateTime(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND a.minute >= steps.step_minute
GROUP BY steps.idx, a.client_id, a.key_id, a.outcome`

// spikeSelectKeylessMinutes counts the failures without a known key or client per minute of the
// overall window: an upper bound of what phase 2 can attribute to any case. Args: the window.
const spikeSelectKeylessMinutes = `
SELECT toStartOfMinute(ts) AS minute, count()
FROM auth_events
WHERE client_id = '' AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome IN ` + spikeFailures + `
  AND key_id NOT IN (SELECT key_id FROM key_lifecycle_events)
GROUP BY minute`

// spikeCases is the case table of phase 2. Args: case index, client, the rotation's old and new
// key, baseline start, step minute, short window start, long window start (arrays, one element
// per case; the times Unix milliseconds).
const spikeCases = `
WITH cases AS (
    SELECT toUInt32(t.1) AS idx, t.2 AS client_id, t.3 AS keys, fromUnixTimestamp64Milli(toInt64(t.4), 'UTC') AS base_from, fromUnixTimestamp64Milli(toInt64(t.5), 'UTC') AS step_minute,
        fromUnixTimestamp64Milli(toInt64(t.6), 'UTC') AS short_from, fromUnixTimestamp64Milli(toInt64(t.7), 'UTC') AS long_from
    FROM (SELECT arrayJoin(arrayZip(?, ?, ?, ?, ?, ?, ?)) AS t))`

// spikeSelectBaselines counts each candidate's requests and failures on the rotation's keys before
// the step: over the baseline, and in the same time of the week as the long window in earlier
// weeks. Rows are read only in those ranges, because for keys with little traffic every daily
// partition read costs a granule per key. Args after the case table: now (minute), weeks back, long
// window minutes; then the keys, clients, the baselines' overall range and the spikeWeeks (4)
// earlier weeks' ranges.
const spikeSelectBaselines = spikeCases + `
SELECT cases.idx, toString(a.outcome) AS outcome,
    sumIf(a.requests, a.minute >= cases.base_from) AS base,
    -- minutes ago = d: in [now - long - k weeks, now - k weeks) for k in 1..weeks <=> (d-1) div week = k, (d-1) mod week < long
    sumIf(a.requests, intDiv(dateDiff('minute', a.minute, fromUnixTimestamp64Milli(toInt64(?), 'UTC')) - 1, 10080) BETWEEN 1 AND ?
        AND (dateDiff('minute', a.minute, fromUnixTimestamp64Milli(toInt64(?), 'UTC')) - 1) % 10080 < ?) AS same_hour
FROM key_minutes AS a INNER JOIN cases ON a.client_id = cases.client_id
WHERE a.key_id IN ? AND a.client_id IN ?
  AND (a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
       OR a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
       OR a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
       OR a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
       OR a.minute >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND a.minute < fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
  AND has(cases.keys, a.key_id) AND a.minute < cases.step_minute
GROUP BY cases.idx, a.outcome`

// spikeSelectKeyless attributes the failures without a known key or client to the candidates'
// clients: a client's callers are the (IP, user agent) pairs seen with the rotation's keys in the
// baseline (key_caller_hours), and a keyless failure from such a pair counts as the client's. A pair
// seen with two clients counts for both. The raw lookup is bounded to the long windows. Args after
// the case table: keys, clients, overall hour range of the baselines, the raw window.
const spikeSelectKeyless = spikeCases + `,
callers AS (
    SELECT cases.idx AS idx, c.ip AS ip, c.user_agent AS user_agent,
        any(cases.short_from) AS short_from, any(cases.long_from) AS long_from
    FROM key_caller_hours AS c INNER JOIN cases ON c.client_id = cases.client_id
    WHERE c.key_id IN ? AND c.client_id IN ? AND c.hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND c.hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
      AND has(cases.keys, c.key_id) AND c.hour >= toStartOfHour(cases.base_from) AND c.hour < cases.step_minute
    GROUP BY idx, ip, user_agent)
SELECT callers.idx, e.ip, toString(e.user_agent), toString(e.outcome), toString(e.route),
    countIf(e.ts >= callers.short_from) AS short, countIf(e.ts >= callers.long_from) AS long
FROM auth_events AS e INNER JOIN callers ON e.ip = callers.ip AND e.user_agent = callers.user_agent
WHERE e.client_id = '' AND e.ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.outcome IN ` + spikeFailures + `
  AND e.key_id NOT IN (SELECT key_id FROM key_lifecycle_events)
GROUP BY callers.idx, e.ip, e.user_agent, e.outcome, e.route
HAVING long > 0`

// spikeSelectRoutes returns the top routes of the cases' failures in their long windows: a bounded
// raw lookup (the rotations' keys over at most the long window), only for the cases that fire. Args
// after the case table: keys, clients, the overall window, how many routes per case.
const spikeSelectRoutes = spikeCases + `
SELECT cases.idx, toString(e.route), count() AS failures
FROM auth_events AS e INNER JOIN cases ON e.client_id = cases.client_id
WHERE e.key_id IN ? AND e.client_id IN ? AND e.ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.outcome IN ` + spikeFailures + `
  AND has(cases.keys, e.key_id) AND e.ts >= cases.long_from
GROUP BY cases.idx, e.route
ORDER BY failures DESC, e.route
LIMIT ? BY cases.idx`

// spikeSelectCallers counts the distinct callers, (IP, user agent) pairs and addresses, of the
// cases' failures on the rotation's keys in their long windows: a bounded raw lookup like
// spikeSelectRoutes, only for the cases that fire. Args after the case table: keys, clients, the
// overall window.
const spikeSelectCallers = spikeCases + `
SELECT cases.idx, uniqExact(e.ip, e.user_agent), uniqExact(e.ip)
FROM auth_events AS e INNER JOIN cases ON e.client_id = cases.client_id
WHERE e.key_id IN ? AND e.client_id IN ? AND e.ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND e.outcome IN ` + spikeFailures + `
  AND has(cases.keys, e.key_id) AND e.ts >= cases.long_from
GROUP BY cases.idx`

// windows returns a case for every step within AfterStep × client on the rotation's keys since the
// step (the rotation's own client always), with its short and long windows counted.
func (d *Spike) windows(ctx context.Context, model *rotation.Model, now time.Time) ([]*spikeCase, error) {
	type stepOf struct {
		rot  *rotation.Rotation
		step rotation.Step
	}
	var steps []stepOf
	for _, r := range model.Rotations {
		for _, s := range r.Steps {
			if !s.At.After(now) && now.Sub(s.At) <= time.Duration(d.cfg.AfterStep) {
				steps = append(steps, stepOf{r, s})
			}
		}
	}
	if len(steps) == 0 {
		return nil, nil
	}
	type caseID struct {
		step   int
		client string
	}
	var out []*spikeCase
	byID := map[caseID]*spikeCase{}
	add := func(i int, client string) *spikeCase {
		if c := byID[caseID{i, client}]; c != nil {
			return c
		}
		s := steps[i]
		stepMinute := s.step.At.Truncate(time.Minute)
		short, long := d.windowStarts(stepMinute, now)
		c := &spikeCase{
			rot: s.rot, step: s.step, client: client,
			baseFrom: stepMinute.Add(-time.Duration(d.cfg.Baseline)), stepMinute: stepMinute, shortFrom: short, longFrom: long,
			byOutcome: map[string]uint64{}, byKey: map[string]uint64{},
			keylessRoutes: map[string]uint64{}, keylessCallers: map[string]uint64{},
		}
		byID[caseID{i, client}] = c
		out = append(out, c)
		return c
	}
	var idx []uint32
	var keys []string
	var shorts, longs, stepMinutes []int64 // Unix milliseconds
	for i, s := range steps {
		if s.rot.ClientID != "" {
			add(i, s.rot.ClientID)
		}
		stepMinute := s.step.At.Truncate(time.Minute)
		short, long := d.windowStarts(stepMinute, now)
		for _, k := range []string{s.rot.OldKeyID, s.rot.NewKeyID} {
			idx, keys = append(idx, uint32(i)), append(keys, k)
			shorts, longs = append(shorts, short.UnixMilli()), append(longs, long.UnixMilli())
			stepMinutes = append(stepMinutes, stepMinute.UnixMilli())
		}
	}
	from := time.UnixMilli(slices.Min(stepMinutes)).UTC()
	rows, err := d.conn.Query(ctx, spikeSelectWindows, idx, keys, shorts, longs, stepMinutes, spikeUniq(keys), from.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("count requests on the keys of %d rotation steps since %s: %w", len(steps), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var i uint32
		var client, key, outcome string
		var short, long, since uint64
		if err := rows.Scan(&i, &client, &key, &outcome, &short, &long, &since); err != nil {
			return nil, fmt.Errorf("count requests on the keys of rotation steps: %w", err)
		}
		c, failed := add(int(i), client), spikeIsFailure(outcome)
		c.shortWin.add(short, failed)
		c.longWin.add(long, failed)
		c.sinceStep.add(since, failed)
		if failed {
			c.byOutcome[outcome] += long
			c.byKey[key] += long
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count requests on the keys of rotation steps: %w", err)
	}
	return out, nil
}

// keylessMinutes returns the failures without a known key or client per minute of the cases'
// long windows.
func (d *Spike) keylessMinutes(ctx context.Context, cases []*spikeCase, now time.Time) (map[time.Time]uint64, error) {
	from := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.longFrom.Compare(b.longFrom) }).longFrom
	rows, err := d.conn.Query(ctx, spikeSelectKeylessMinutes, from.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("count keyless failures since %s: %w", from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[time.Time]uint64{}
	for rows.Next() {
		var m time.Time
		var n uint64
		if err := rows.Scan(&m, &n); err != nil {
			return nil, fmt.Errorf("count keyless failures: %w", err)
		}
		out[m.UTC()] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count keyless failures: %w", err)
	}
	return out, nil
}

// spikeCaseArgs returns the arguments of the spikeCases table (times as Unix milliseconds), and all
// the cases' keys and clients (for the primary key).
func spikeCaseArgs(cases []*spikeCase) (table []any, keys, clients []string) {
	n := len(cases)
	idx, caseClients, caseKeys := make([]uint32, n), make([]string, n), make([][]string, n)
	base, step, short, long := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, c := range cases {
		idx[i], caseClients[i] = uint32(i), c.client
		base[i], step[i], short[i], long[i] = c.baseFrom.UnixMilli(), c.stepMinute.UnixMilli(), c.shortFrom.UnixMilli(), c.longFrom.UnixMilli()
		caseKeys[i] = []string{c.rot.OldKeyID, c.rot.NewKeyID}
		keys = append(keys, caseKeys[i]...)
	}
	return []any{idx, caseClients, caseKeys, base, step, short, long}, spikeUniq(keys), spikeUniq(caseClients)
}

func (d *Spike) baselines(ctx context.Context, cases []*spikeCase, now time.Time) error {
	args, keys, clients := spikeCaseArgs(cases)
	nowMinute := now.Truncate(time.Minute)
	long := time.Duration(d.cfg.LongWindow)
	from := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.baseFrom.Compare(b.baseFrom) }).baseFrom
	until := slices.MaxFunc(cases, func(a, b *spikeCase) int { return a.stepMinute.Compare(b.stepMinute) }).stepMinute
	args = append(args, nowMinute.UnixMilli(), spikeWeeks, nowMinute.UnixMilli(), int64(long/time.Minute), keys, clients, from.UnixMilli(), until.UnixMilli())
	for k := 1; k <= spikeWeeks; k++ {
		weekAgo := nowMinute.Add(-time.Duration(k) * spikeWeek)
		args = append(args, weekAgo.Add(-long).UnixMilli(), weekAgo.UnixMilli())
	}
	rows, err := d.conn.Query(ctx, spikeSelectBaselines, args...)
	if err != nil {
		return fmt.Errorf("count requests of %d clients before their steps since %s: %w", len(clients), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var i uint32
		var outcome string
		var base, sameHour uint64
		if err := rows.Scan(&i, &outcome, &base, &sameHour); err != nil {
			return fmt.Errorf("count requests before steps: %w", err)
		}
		failed := spikeIsFailure(outcome)
		cases[i].base.add(base, failed)
		cases[i].sameHour.add(sameHour, failed)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count requests before steps: %w", err)
	}
	return nil
}

func (d *Spike) attributeKeyless(ctx context.Context, cases []*spikeCase, now time.Time) error {
	args, keys, clients := spikeCaseArgs(cases)
	baseFrom := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.baseFrom.Compare(b.baseFrom) }).baseFrom
	stepTo := slices.MaxFunc(cases, func(a, b *spikeCase) int { return a.stepMinute.Compare(b.stepMinute) }).stepMinute
	rawFrom := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.longFrom.Compare(b.longFrom) }).longFrom
	args = append(args, keys, clients, baseFrom.UnixMilli(), stepTo.UnixMilli(), rawFrom.UnixMilli(), now.UnixMilli())
	rows, err := d.conn.Query(ctx, spikeSelectKeyless, args...)
	if err != nil {
		return fmt.Errorf("attribute keyless failures to %d clients: %w", len(clients), err)
	}
	defer rows.Close()
	for rows.Next() {
		var i uint32
		var ip net.IP
		var ua, outcome, route string
		var short, long uint64
		if err := rows.Scan(&i, &ip, &ua, &outcome, &route, &short, &long); err != nil {
			return fmt.Errorf("attribute keyless failures: %w", err)
		}
		c := cases[i]
		c.shortWin.add(short, true)
		c.longWin.add(long, true)
		c.sinceStep.add(long, true) // keyless failures are looked up in the long window only
		c.byOutcome[outcome] += long
		c.byKey[""] += long
		c.keylessFailures += long
		c.keylessRoutes[route] += long
		addr, _ := netip.AddrFromSlice(ip)
		c.keylessCallers[addr.Unmap().String()+" "+ua] += long
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("attribute keyless failures: %w", err)
	}
	return nil
}

// routes returns the top routes of each case's failures in its long window, keyless ones included.
func (d *Spike) routes(ctx context.Context, cases []*spikeCase, now time.Time) ([][]SpikeCount, error) {
	args, keys, clients := spikeCaseArgs(cases)
	from := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.longFrom.Compare(b.longFrom) }).longFrom
	args = append(args, keys, clients, from.UnixMilli(), now.UnixMilli(), spikeTop)
	rows, err := d.conn.Query(ctx, spikeSelectRoutes, args...)
	if err != nil {
		return nil, fmt.Errorf("routes of the failures of %d clients since %s: %w", len(clients), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	counts := make([]map[string]uint64, len(cases))
	for i, c := range cases {
		counts[i] = maps.Clone(c.keylessRoutes)
	}
	for rows.Next() {
		var i uint32
		var route string
		var n uint64
		if err := rows.Scan(&i, &route, &n); err != nil {
			return nil, fmt.Errorf("routes of failures: %w", err)
		}
		counts[i][route] += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("routes of failures: %w", err)
	}
	out := make([][]SpikeCount, len(cases))
	for i := range cases {
		out[i] = spikeTopCounts(counts[i])
	}
	return out, nil
}

// callers counts the distinct callers of each case's failures in its long window (keyless ones
// aside: they are counted in the case's keylessCallers).
func (d *Spike) callers(ctx context.Context, cases []*spikeCase, now time.Time) error {
	args, keys, clients := spikeCaseArgs(cases)
	from := slices.MinFunc(cases, func(a, b *spikeCase) int { return a.longFrom.Compare(b.longFrom) }).longFrom
	args = append(args, keys, clients, from.UnixMilli(), now.UnixMilli())
	rows, err := d.conn.Query(ctx, spikeSelectCallers, args...)
	if err != nil {
		return fmt.Errorf("count the callers of the failures of %d clients since %s: %w", len(clients), from.Format(time.RFC3339), err)
	}
	defer rows.Close()
	for rows.Next() {
		var i uint32
		var callers, addresses uint64
		if err := rows.Scan(&i, &callers, &addresses); err != nil {
			return fmt.Errorf("count the callers of failures: %w", err)
		}
		cases[i].callers, cases[i].addresses = callers, addresses
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count the callers of failures: %w", err)
	}
	return nil
}
