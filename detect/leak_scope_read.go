package detect

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The reads of scope probing (leak_scope.go judges what they return). The window's forbidden
// requests are read for the keys with stated scopes that the rollup shows were answered forbidden
// in the window; the key's forbidden history only for those whose window holds enough requests
// outside their scopes to be probing (leakScopeProbes), so a quiet run reads no history at all.

// leakSelectForbiddenKeys finds the keys with forbidden answers in the window, from the hourly
// rollup of forbidden requests: the groups of the window's hours whose first request is before its
// end and last at or after its start. That is every key leakSelectForbiddenCalls counts, and only
// those unless a group's requests surround a window shorter than an hour. Arguments: window start,
// now.
const leakSelectForbiddenKeys = `
WITH fromUnixTimestamp64Milli(toInt64(?), 'UTC') AS span_start, fromUnixTimestamp64Milli(toInt64(?), 'UTC') AS span_end
SELECT DISTINCT key_id
FROM key_refusals_1h
WHERE hour >= toStartOfHour(span_start) AND hour < span_end AND last_seen >= span_start AND first_seen < span_end AND key_id != ''`

// leakScopeCaller is the network part of a caller in scope probing's history, as the leak
// detector names networks: the ASN, else the /24 (or /48 for IPv6) of the address. With the user
// agent it is the caller: a client's pool of cloud addresses is one caller, a script from
// elsewhere or with another user agent is not.
const leakScopeCaller = `if(asn != 0, concat('AS', toString(asn)), cutIPv6(ip, 10, 1))`

// leakSelectForbiddenCalls reads the given keys' forbidden requests in the window per method,
// route, address and user agent, from the raw events (through the primary key: key_id, ts).
// Arguments: keys, window start, now.
const leakSelectForbiddenCalls = `
SELECT
    key_id, method, route, ` + leakScopeCaller + ` AS net, replaceRegexpOne(IPv6NumToString(ip), '^::ffff:', ''), user_agent,
    count(), min(ts), max(ts)
FROM auth_events
WHERE key_id IN ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'
GROUP BY key_id, method, route, ip, user_agent, net`

// leakForbiddenRows are the given keys' forbidden requests over a span, per hour, method, route,
// address, user agent and ASN, with their count and first and last time, from the hourly rollup
// key_refusals_1h (through its primary key: key_id, hour): the span's whole hours as they are,
// and in the partial hours at either end the groups whose first and last request lie inside the
// span. The raw events are read only for the groups of a partial hour that have requests both
// inside and outside the span (through their primary key: key_id and the two ranges of ts), one
// row each: usually a few, where reading the partial hours of every key from the raw events reads
// a granule of each key and day. The keys are the external table span_keys (key_id), as
// thousands of them would not fit in a query's text (leakForbiddenSpan.context); the other
// arguments leakForbiddenSpan.args.
const leakForbiddenRows = `
    SELECT key_id, method, route, hour, ip, user_agent, asn, toUInt64(requests) AS n,
        toDateTime64(first_seen, 3, 'UTC') AS first_ts, toDateTime64(last_seen, 3, 'UTC') AS last_ts
    FROM key_refusals_1h
    WHERE key_id IN (SELECT key_id FROM span_keys) AND hour >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    UNION ALL
    SELECT key_id, method, route, hour, ip, user_agent, asn, n, first_ts, last_ts
    FROM (` + leakForbiddenPartialGroups + `)
    WHERE first_ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND last_ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
    UNION ALL
    SELECT key_id, method, route, toStartOfHour(toDateTime(ts, 'UTC')) AS hour, ip, user_agent, asn, toUInt64(1) AS n,
        ts AS first_ts, ts AS last_ts
    FROM auth_events
    WHERE key_id IN (SELECT key_id FROM span_keys)
        AND (ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
             OR ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
        AND outcome = 'forbidden'
        AND (key_id, toStartOfHour(toDateTime(ts, 'UTC')), method, route, ip, user_agent, asn) IN (
            SELECT key_id, hour, method, route, ip, user_agent, asn
            FROM (` + leakForbiddenPartialGroups + `)
            WHERE last_ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND first_ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
              AND NOT (first_ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND last_ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC')))`

// leakForbiddenPartialGroups are the groups of key_refusals_1h in the hours of the two ranges at a
// span's ends (leakForbiddenRows), merged: a group's rows may not be merged yet, and whether it
// lies inside the span is told by all of them. Arguments: the two ranges.
const leakForbiddenPartialGroups = `
        SELECT key_id, method, route, hour, ip, user_agent, asn,
            sum(requests) AS n, min(first_seen) AS first_ts, max(last_seen) AS last_ts
        FROM key_refusals_1h
        WHERE key_id IN (SELECT key_id FROM span_keys)
            AND (hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC')
                 OR hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AND hour < fromUnixTimestamp64Milli(toInt64(?), 'UTC'))
        GROUP BY key_id, method, route, hour, ip, user_agent, asn`

// leakForbiddenSpan is a span of forbidden history: from start to end, its whole hours from the
// first hour that starts at or after start to the start of end's hour.
type leakForbiddenSpan struct {
	keys                 []string
	start, end           time.Time
	wholeFrom, wholeUpTo time.Time
}

func newLeakForbiddenSpan(keys []string, start, end time.Time) leakForbiddenSpan {
	s := leakForbiddenSpan{keys: keys, start: start, end: end, wholeFrom: start.Truncate(time.Hour), wholeUpTo: end.Truncate(time.Hour)}
	if s.wholeFrom.Before(start) {
		s.wholeFrom = s.wholeFrom.Add(time.Hour)
	}
	return s
}

// args are leakForbiddenRows's arguments: the whole hours; the partial hours' groups
// inside the span; the raw events of those that straddle its start or end. The partial hours are
// two ranges, [start, wholeFrom) and [wholeUpTo, end), each cut to the span (a span within one
// hour has no whole hour, and both ranges are the span).
func (s leakForbiddenSpan) args() []any {
	partial := []any{s.start.UnixMilli(), earlier(s.wholeFrom, s.end).UnixMilli(), later(s.wholeUpTo, s.start).UnixMilli(), s.end.UnixMilli()}
	span := []any{s.start.UnixMilli(), s.end.UnixMilli()}
	args := []any{s.wholeFrom.UnixMilli(), s.wholeUpTo.UnixMilli()}
	args = append(append(args, partial...), span...)
	args = append(append(append(args, partial...), partial...), span...)
	return append(args, span...)
}

// context is ctx with the span's keys as the external table span_keys, which leakForbiddenRows
// reads.
func (s leakForbiddenSpan) context(ctx context.Context) (context.Context, error) {
	t, err := ext.NewTable("span_keys", ext.Column("key_id", "String"))
	if err != nil {
		return nil, fmt.Errorf("make the external table of %d keys: %w", len(s.keys), err)
	}
	for _, k := range s.keys {
		if err := t.Append(k); err != nil {
			return nil, fmt.Errorf("list %d keys: %w", len(s.keys), err)
		}
	}
	return clickhouse.Context(ctx, clickhouse.WithExternalTable(t)), nil
}

// leakSelectForbiddenHistory reads the given keys' forbidden requests over a span per method and
// route (leakForbiddenRows): requests, the days (24 h periods back from the span's end, 0 the
// latest), the distinct hours, the distinct callers (leakScopeCaller and user agent), first and
// last. A row lies in one hour, so the days it has requests in are those of its first and last.
// Arguments: end, then leakForbiddenSpan.args (and its context).
const leakSelectForbiddenHistory = `
WITH toUnixTimestamp64Milli(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) AS end_ms
SELECT key_id, method, route, sum(n),
    groupUniqArrayArray(arrayDistinct([
        toUInt32(intDiv(end_ms - toUnixTimestamp64Milli(first_ts) - 1, 86400000)),
        toUInt32(intDiv(end_ms - toUnixTimestamp64Milli(last_ts) - 1, 86400000))])),
    uniqExact(hour),
    uniqExact(` + leakScopeCaller + `, user_agent), min(first_ts), max(last_ts)
FROM (` + leakForbiddenRows + `)
GROUP BY key_id, method, route`

// leakSelectForbiddenCallers reads the callers (network, user agent) of the given keys' forbidden
// requests in their history (leakForbiddenRows), at most leakScopeHistoryCallers per key (busiest
// first). Arguments: leakForbiddenSpan.args (and its context), the limit.
const leakSelectForbiddenCallers = `
SELECT key_id, ` + leakScopeCaller + ` AS net, user_agent, sum(n) AS requests
FROM (` + leakForbiddenRows + `)
GROUP BY key_id, net, user_agent
ORDER BY key_id, requests DESC, net, user_agent
LIMIT ? BY key_id`

// scopeProbes reads the keys answered forbidden in the window and judges their routes
// (leakScopeProbes), then the probing ones against their forbidden history (leakScopeJudge). It
// loads the rotation model into r when it has to read it.
func (d *Leak) scopeProbes(ctx context.Context, r *leakRun) (map[string]*LeakScopeProbe, error) {
	if len(d.rules) == 0 || d.cfg.ScoreScopeProbing <= 0 {
		return nil, nil
	}
	forbidden, err := queryStrings(ctx, d.conn, leakSelectForbiddenKeys, r.windowStart.UnixMilli(), r.now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find keys answered forbidden since %s in key_refusals_1h: %w", r.windowStart.Format(time.RFC3339), err)
	}
	if len(forbidden) == 0 {
		return nil, nil
	}
	if r.model == nil {
		if r.model, err = d.models.Load(ctx); err != nil {
			return nil, err
		}
	}
	var scoped []string
	for _, key := range forbidden {
		if k := r.model.Key(key); k != nil && len(k.Scopes) > 0 {
			scoped = append(scoped, key)
		}
	}
	if len(scoped) == 0 {
		return nil, nil
	}
	slices.Sort(scoped)
	calls, err := d.readForbiddenCalls(ctx, scoped, r.windowStart, r.now)
	if err != nil {
		return nil, err
	}
	minRequests := uint64(d.cfg.ScopeProbingMinRequests)
	// Without history first: only the keys probing by their window alone need theirs.
	probing := slices.Sorted(maps.Keys(leakScopeProbes(r.model, d.rules, leakScopeRoutes(calls), minRequests)))
	if len(probing) == 0 {
		return nil, nil
	}
	var hist map[string]*leakScopeHistory
	if history := time.Duration(d.cfg.ScopeHistory); history > 0 {
		if hist, err = d.readForbiddenHistory(ctx, probing, r.windowStart.Add(-history), r.windowStart); err != nil {
			return nil, err
		}
	}
	return leakScopeJudge(r.model, d.rules, probing, calls, hist, d.cfg.ScopeStandingDays, r.now.Sub(r.windowStart), minRequests), nil
}

// readForbiddenCalls returns the keys' forbidden requests from start to end, per method, route,
// address and user agent.
func (d *Leak) readForbiddenCalls(ctx context.Context, keys []string, start, end time.Time) (map[string][]leakForbiddenCall, error) {
	rows, err := d.conn.Query(ctx, leakSelectForbiddenCalls, keys, start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read forbidden requests of %d keys since %s from auth_events: %w", len(keys), start.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string][]leakForbiddenCall{}
	for rows.Next() {
		var key string
		var c leakForbiddenCall
		if err := rows.Scan(&key, &c.method, &c.route, &c.caller.net, &c.ip, &c.caller.userAgent, &c.requests, &c.first, &c.last); err != nil {
			return nil, fmt.Errorf("read forbidden requests from auth_events: %w", err)
		}
		c.first, c.last = c.first.UTC(), c.last.UTC()
		out[key] = append(out[key], c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read forbidden requests from auth_events: %w", err)
	}
	return out, nil
}

// readForbiddenHistory returns the keys' forbidden history from start to end (the window's start):
// per route, and their callers.
func (d *Leak) readForbiddenHistory(ctx context.Context, keys []string, start, end time.Time) (map[string]*leakScopeHistory, error) {
	routes, err := readForbiddenRoutes(ctx, d.conn, keys, start, end)
	if err != nil {
		return nil, err
	}
	out := map[string]*leakScopeHistory{}
	of := func(key string) *leakScopeHistory {
		h := out[key]
		if h == nil {
			h = &leakScopeHistory{routes: routes[key], callers: map[leakScopeCallerID]bool{}}
			if h.routes == nil {
				h.routes = map[[2]string]leakScopeRouteHistory{}
			}
			out[key] = h
		}
		return h
	}
	for key := range routes {
		of(key)
	}
	span := newLeakForbiddenSpan(keys, start, end)
	spanCtx, err := span.context(ctx)
	if err != nil {
		return nil, err
	}
	callers, err := d.conn.Query(spanCtx, leakSelectForbiddenCallers, append(span.args(), leakScopeHistoryCallers)...)
	if err != nil {
		return nil, fmt.Errorf("read the forbidden callers of %d keys from %s to %s from key_refusals_1h: %w", len(keys), start.Format(time.RFC3339), end.Format(time.RFC3339), err)
	}
	defer callers.Close()
	for callers.Next() {
		var key string
		var c leakScopeCallerID
		var n uint64
		if err := callers.Scan(&key, &c.net, &c.userAgent, &n); err != nil {
			return nil, fmt.Errorf("read the forbidden callers from key_refusals_1h: %w", err)
		}
		of(key).callers[c] = true
	}
	if err := callers.Err(); err != nil {
		return nil, fmt.Errorf("read the forbidden callers from key_refusals_1h: %w", err)
	}
	return out, nil
}

// readForbiddenRoutes returns the keys' forbidden requests from start to end per method and route
// (leakSelectForbiddenHistory): scope probing's history, and hygiene's standing refusals.
func readForbiddenRoutes(ctx context.Context, conn driver.Conn, keys []string, start, end time.Time) (map[string]map[[2]string]leakScopeRouteHistory, error) {
	span := newLeakForbiddenSpan(keys, start, end)
	spanCtx, err := span.context(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(spanCtx, leakSelectForbiddenHistory, append([]any{end.UnixMilli()}, span.args()...)...)
	if err != nil {
		return nil, fmt.Errorf("read the forbidden requests of %d keys from %s to %s from key_refusals_1h: %w", len(keys), start.Format(time.RFC3339), end.Format(time.RFC3339), err)
	}
	defer rows.Close()
	out := map[string]map[[2]string]leakScopeRouteHistory{}
	for rows.Next() {
		var key, method, route string
		var h leakScopeRouteHistory
		if err := rows.Scan(&key, &method, &route, &h.requests, &h.days, &h.hours, &h.callers, &h.first, &h.last); err != nil {
			return nil, fmt.Errorf("read the forbidden requests per route from key_refusals_1h: %w", err)
		}
		h.first, h.last = h.first.UTC(), h.last.UTC()
		if out[key] == nil {
			out[key] = map[[2]string]leakScopeRouteHistory{}
		}
		out[key][[2]string{method, route}] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the forbidden requests per route from key_refusals_1h: %w", err)
	}
	return out, nil
}
