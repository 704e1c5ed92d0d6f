package detect

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// scopeRoutes is the route→scope map of the scope-probing tests: prices and order listing are
// read, every other order call is trade.
var scopeRoutes = map[string]string{
	"/v1/prices*":     "read",
	"/v1/orders*":     "trade",
	"GET /v1/orders*": "read",
}

// keyScopes stores a key.created event stating key's scopes (none: a key.created without them).
func (s *scenario) keyScopes(key, client string, at time.Time, scopes ...string) {
	s.t.Helper()
	if scopes == nil {
		scopes = []string{}
	}
	if err := s.conn.Exec(context.Background(), `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, scopes, src_topic, src_partition, src_offset)
		VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'key.created', ?, ?, ?, 'key-lifecycle', 0, 0)`, at.UnixMilli(), key, client, scopes); err != nil {
		s.t.Fatal(err)
	}
}

// TestLeakScopeProbing: a read-only key (by its lifecycle event) answered forbidden on trade routes
// in the window is a scope_probing signal with the routes, counts and the key's scopes; its normal
// reads, forbidden answers on routes its scopes grant or no rule covers, a key without stated
// scopes, too few requests and probing before the window are not. With a new network the same
// probing adds its score to that signal's.
func TestLeakScopeProbing(t *testing.T) {
	const key, client = "kid_ro", "acme-readonly"
	type call struct {
		method, route, outcome string
		n                      int
	}
	probe := []call{{"POST", "/v1/orders", "forbidden", 10}, {"DELETE", "/v1/orders/42", "forbidden", 5}}
	for _, tc := range []struct {
		name      string
		scopes    []string // stated by the key's lifecycle event; nil: none stated
		calls     []call   // in the window, one a minute each, from the key's usual address
		before    []call   // the same, ending two hours ago
		newPlace  bool     // the window's calls come from a network and country the key never used
		wantScore float64  // 0: no finding
		wantProbe uint64   // forbidden requests outside the scopes in the evidence; 0: no scope_probing signal
	}{
		{name: "probing trade routes", scopes: []string{"read"}, calls: probe, wantScore: 60, wantProbe: 15},
		{name: "normal reads", scopes: []string{"read"}, calls: []call{{"GET", "/v1/prices", "ok", 15}, {"GET", "/v1/orders", "ok", 15}}},
		{name: "forbidden where its scopes grant the route", scopes: []string{"read"},
			calls: []call{{"GET", "/v1/prices/eur", "forbidden", 15}, {"GET", "/v1/orders", "forbidden", 15}}},
		{name: "forbidden on routes without a rule", scopes: []string{"read"}, calls: []call{{"POST", "/v2/admin/users", "forbidden", 15}}},
		{name: "trade routes let through", scopes: []string{"read"}, calls: []call{{"POST", "/v1/orders", "ok", 15}}},
		{name: "key with the trade scope", scopes: []string{"read", "trade"}, calls: probe},
		{name: "key without stated scopes", calls: probe},
		{name: "too few forbidden requests", scopes: []string{"read"}, calls: []call{{"POST", "/v1/orders", "forbidden", 4}}},
		{name: "probing before the window", scopes: []string{"read"}, before: probe},
		{name: "new network alone", scopes: []string{"read"}, calls: []call{{"GET", "/v1/prices", "ok", 15}}, newPlace: true, wantScore: 70},
		{name: "new network and probing", scopes: []string{"read"}, calls: probe, newPlace: true, wantScore: 130, wantProbe: 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t)
			s.cfg.Leak.RouteScopes = scopeRoutes
			s.keyScopes(key, client, now.Add(-20*24*time.Hour), tc.scopes...)
			evs := leakSteady(key, client, now.Add(-8*24*time.Hour), now, 30*time.Second, leakUsualIPs, 64500, "Example Net", "DE")
			add := func(calls []call, from time.Time, newPlace bool) {
				at := from
				for _, c := range calls {
					for range c.n {
						e := event{TS: at, KeyID: key, ClientID: client, Outcome: c.outcome, Method: c.method, Route: c.route,
							IP: "198.51.100.10", ASN: 64500, ASOrg: "Example Net", Country: "DE"}
						if newPlace {
							e.IP, e.ASN, e.ASOrg, e.Country, e.UA = "203.0.113.66", 64666, "Bulletproof Hosting", "BR", "python-requests/2.31"
						}
						evs = append(evs, e)
						at = at.Add(time.Minute)
					}
				}
			}
			add(tc.calls, now.Add(-45*time.Minute), tc.newPlace)
			add(tc.before, now.Add(-2*time.Hour-20*time.Minute), false)
			s.events(evs)

			fs := s.leak()
			if tc.wantScore == 0 {
				if len(fs) != 0 {
					t.Fatalf("got %d findings, want none: %+v", len(fs), fs)
				}
				return
			}
			f := leakOnly(t, fs)
			ev := leakEvidence(t, f)
			if f.Score != tc.wantScore || f.KeyID != key || f.ClientID != client {
				t.Fatalf("finding %s score %g signals %v; want key %s score %g", f.KeyID, f.Score, leakKinds(ev), key, tc.wantScore)
			}
			if _, err := f.EvidenceJSON(); err != nil {
				t.Fatal(err)
			}
			if tc.wantProbe == 0 {
				if slices.Contains(leakKinds(ev), leakSignalScopeProbing) {
					t.Fatalf("signals %v hold scope_probing", leakKinds(ev))
				}
				return
			}
			sig := leakSignalOf(t, ev, leakSignalScopeProbing)
			p := sig.Scope
			if sig.Score != 60 || p == nil || p.Requests != tc.wantProbe || !slices.Equal(p.KeyScopes, []string{"read"}) || p.RoutesTotal != 2 || len(p.Routes) != 2 {
				t.Fatalf("scope_probing signal %+v, evidence %+v; want score 60, %d requests over 2 routes, key scopes [read]", sig, p, tc.wantProbe)
			}
			want := []LeakProbedRoute{
				{Method: "POST", Route: "/v1/orders", Scopes: []string{"trade"}, Pattern: "/v1/orders*", Requests: 10,
					FirstSeen: now.Add(-45 * time.Minute), LastSeen: now.Add(-36 * time.Minute)},
				{Method: "DELETE", Route: "/v1/orders/42", Scopes: []string{"trade"}, Pattern: "/v1/orders*", Requests: 5,
					FirstSeen: now.Add(-35 * time.Minute), LastSeen: now.Add(-31 * time.Minute)},
			}
			for i, w := range want {
				g := p.Routes[i]
				if g.Method != w.Method || g.Route != w.Route || !slices.Equal(g.Scopes, w.Scopes) || g.Pattern != w.Pattern ||
					g.Requests != w.Requests || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) || len(g.SampleIPs) != 1 {
					t.Errorf("route %d = %+v, want %+v", i, g, w)
				}
			}
			// 120 steady requests in the hour plus the 15 probes.
			if ev.WindowRequests != 135 || p.Share != leakRound4(15.0/135) {
				t.Errorf("window requests %d, share %g; want 135 and %g", ev.WindowRequests, p.Share, leakRound4(15.0/135))
			}
			if !strings.Contains(sig.Reason, "15 forbidden request(s) to 2 route(s) its scopes (read) do not grant: POST /v1/orders 10 (needs trade), DELETE /v1/orders/42 5 (needs trade)") ||
				!strings.Contains(f.Summary, "probed routes outside its scopes (read): 15 forbidden requests to POST /v1/orders (needs trade) and 1 more route(s) in the last hour") {
				t.Errorf("reason %q, summary %q", sig.Reason, f.Summary)
			}
		})
	}
}

// TestLeakScopeProbingOff: without route_scopes the same probing is not judged.
func TestLeakScopeProbingOff(t *testing.T) {
	s := newScenario(t)
	s.keyScopes("kid_ro", "acme", now.Add(-20*24*time.Hour), "read")
	s.events(every(now.Add(-30*time.Minute), now, time.Minute, func(time.Time) (event, bool) {
		return event{KeyID: "kid_ro", ClientID: "acme", Outcome: "forbidden", Method: "POST", Route: "/v1/orders"}, true
	}))
	if fs := s.leak(); len(fs) != 0 {
		t.Fatalf("got %d findings without route_scopes, want none: %+v", len(fs), fs)
	}
}
