package detect

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// rawForbiddenHistory and rawForbiddenCallers are leakSelectForbiddenHistory and
// leakSelectForbiddenCallers computed from the raw events alone: what the reads through
// key_refusals_1h must equal. Arguments: end, keys, start, end; keys, start, end, the limit.
const (
	rawForbiddenHistory = `
SELECT key_id, method, route, count(),
    groupUniqArray(toUInt32(intDiv(toUnixTimestamp64Milli(fromUnixTimestamp64Milli(toInt64(?), 'UTC')) - toUnixTimestamp64Milli(ts) - 1, 86400000))),
    uniqExact(toStartOfHour(ts)),
    uniqExact(` + leakScopeCaller + `, user_agent), min(ts), max(ts)
FROM auth_events
WHERE key_id IN ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'
GROUP BY key_id, method, route`
	rawForbiddenCallers = `
SELECT key_id, ` + leakScopeCaller + ` AS net, user_agent, count() AS requests
FROM auth_events
WHERE key_id IN ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'
GROUP BY key_id, net, user_agent
ORDER BY key_id, requests DESC, net, user_agent
LIMIT ? BY key_id`
	rawForbiddenKeys = `
SELECT DISTINCT key_id FROM auth_events
WHERE ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND outcome = 'forbidden'`
)

// TestForbiddenHistoryFromTheRollup: the forbidden history read from key_refusals_1h (whole hours,
// and the groups of the partial hours at the span's ends that lie inside it) and the raw events
// (the groups that straddle an end) equals the one read from the raw events alone, per route and
// per caller, for spans that start and end inside hours, on hours, or within one hour; and the
// keys found refused in a span are those the raw events hold.
func TestForbiddenHistoryFromTheRollup(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	keys := []string{"kid_a", "kid_b", "kid_c", "kid_d"}
	var evs []event
	for range 4000 {
		ev := event{
			TS:      base.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))).Truncate(time.Millisecond),
			KeyID:   keys[rng.IntN(len(keys))],
			Outcome: []string{"forbidden", "forbidden", "ok"}[rng.IntN(3)],
			IP:      []string{"198.51.100.7", "198.51.100.9", "203.0.113.5", "2001:db8:1::5"}[rng.IntN(4)],
			UA:      []string{"sdk/1.0", "curl/8.1", "python-requests/2.31.0"}[rng.IntN(3)],
			ASN:     []uint32{0, 0, 64500}[rng.IntN(3)],
			Method:  []string{"GET", "POST", "DELETE"}[rng.IntN(3)],
			Route:   []string{"/v1/orders", "/v1/prices", "/v1/orders/{id}"}[rng.IntN(3)],
		}
		ev.ClientID = "client_" + ev.KeyID
		evs = append(evs, ev)
	}
	// Requests on the spans' edges, to the millisecond.
	for _, at := range []time.Time{base.Add(25 * time.Hour), base.Add(25*time.Hour - time.Millisecond), base.Add(50*time.Hour + 17*time.Minute)} {
		evs = append(evs, event{TS: at, KeyID: "kid_a", ClientID: "client_kid_a", Outcome: "forbidden", Method: "POST", Route: "/v1/orders"})
	}
	s.events(evs)

	spans := [][2]time.Time{
		{base.Add(-time.Hour), base.Add(80 * time.Hour)},
		{base.Add(25 * time.Hour), base.Add(50*time.Hour + 17*time.Minute)},
		{base.Add(90*time.Minute + 123*time.Millisecond), base.Add(61*time.Hour + 7*time.Minute + 1*time.Millisecond)},
		{base.Add(30*time.Hour + 5*time.Minute), base.Add(30*time.Hour + 55*time.Minute)},
		{base.Add(30*time.Hour + 55*time.Minute), base.Add(31*time.Hour + 5*time.Minute)},
		{base.Add(40 * time.Hour), base.Add(41 * time.Hour)},
	}
	ctx := t.Context()
	for _, sp := range spans {
		start, end := sp[0], sp[1]
		name := fmt.Sprintf("%s to %s", start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano))
		got, err := readForbiddenRoutes(ctx, s.conn, keys, start, end)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[[2]string]leakScopeRouteHistory{}
		rows, err := s.conn.Query(ctx, rawForbiddenHistory, end.UnixMilli(), keys, start.UnixMilli(), end.UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var key, method, route string
			var h leakScopeRouteHistory
			if err := rows.Scan(&key, &method, &route, &h.requests, &h.days, &h.hours, &h.callers, &h.first, &h.last); err != nil {
				t.Fatal(err)
			}
			if want[key] == nil {
				want[key] = map[[2]string]leakScopeRouteHistory{}
			}
			want[key][[2]string{method, route}] = h
		}
		rows.Close()
		if len(got) != len(want) {
			t.Errorf("%s: %d keys with forbidden history, want %d", name, len(got), len(want))
		}
		for key, routes := range want {
			if len(got[key]) != len(routes) {
				t.Errorf("%s: %s has %d routes, want %d", name, key, len(got[key]), len(routes))
			}
			for id, w := range routes {
				g := got[key][id]
				slices.Sort(g.days)
				slices.Sort(w.days)
				if g.requests != w.requests || !slices.Equal(g.days, w.days) || g.hours != w.hours || g.callers != w.callers ||
					!g.first.Equal(w.first) || !g.last.Equal(w.last) {
					t.Errorf("%s: %s %v = %+v, want %+v", name, key, id, g, w)
				}
			}
		}

		for _, limit := range []int{2, 100} {
			read := func(ctx context.Context, q string, args ...any) []string {
				rows, err := s.conn.Query(ctx, q, args...)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var out []string
				for rows.Next() {
					var key, net, ua string
					var n uint64
					if err := rows.Scan(&key, &net, &ua, &n); err != nil {
						t.Fatal(err)
					}
					out = append(out, fmt.Sprintf("%s %s %s %d", key, net, ua, n))
				}
				return out
			}
			span := newLeakForbiddenSpan(keys, start, end)
			spanCtx, err := span.context(ctx)
			if err != nil {
				t.Fatal(err)
			}
			g := read(spanCtx, leakSelectForbiddenCallers, append(span.args(), limit)...)
			w := read(ctx, rawForbiddenCallers, keys, start.UnixMilli(), end.UnixMilli(), limit)
			if !slices.Equal(g, w) || len(w) == 0 && end.Sub(start) > 2*time.Hour {
				t.Errorf("%s: callers (at most %d a key) = %v, want %v", name, limit, g, w)
			}
		}

		gotKeys, err := queryStrings(ctx, s.conn, leakSelectForbiddenKeys, start.UnixMilli(), end.UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		wantKeys, err := queryStrings(ctx, s.conn, rawForbiddenKeys, start.UnixMilli(), end.UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(gotKeys)
		slices.Sort(wantKeys)
		if !slices.Equal(gotKeys, wantKeys) {
			t.Errorf("%s: keys refused = %v, want %v", name, gotKeys, wantKeys)
		}
	}
}

// TestForbiddenHistoryOfManyKeys: the history of 20,000 keys is read (a day's refused keys can be
// thousands); bound in the query's text they would pass ClickHouse's max_query_size.
func TestForbiddenHistoryOfManyKeys(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.events([]event{{TS: now.Add(-time.Hour), KeyID: "kid_bench_19999", ClientID: "c", Outcome: "forbidden", Method: "GET", Route: "/v1/orders"}})
	keys := make([]string, 20_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("kid_bench_%05d", i)
	}
	got, err := readForbiddenRoutes(t.Context(), s.conn, keys, now.Add(-48*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if h := got["kid_bench_19999"][[2]string{"GET", "/v1/orders"}]; len(got) != 1 || h.requests != 1 {
		t.Errorf("history %+v, want one request of kid_bench_19999 on GET /v1/orders", got)
	}
}
