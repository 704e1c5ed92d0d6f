package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
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
			t.Parallel() // each case is a database of its own
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
	t.Parallel()
	s := newScenario(t)
	s.keyScopes("kid_ro", "acme", now.Add(-20*24*time.Hour), "read")
	s.events(every(now.Add(-30*time.Minute), now, time.Minute, func(time.Time) (event, bool) {
		return event{KeyID: "kid_ro", ClientID: "acme", Outcome: "forbidden", Method: "POST", Route: "/v1/orders"}, true
	}))
	if fs := s.leak(); len(fs) != 0 {
		t.Fatalf("got %d findings without route_scopes, want none: %+v", len(fs), fs)
	}
}

// TestScopeProbingBaseline: scope probing is judged against the key's forbidden history. Two
// read-only keys of two partners have been refused on POST /v1/orders (needs trade) every 10
// minutes for 14 days, from the same ERP host: a standing misconfiguration. kid_erp keeps doing
// just that: no leak finding, and exactly one hygiene finding that names the route and the scope it
// needs. kid_erp2 does the same, and in the last 45 minutes is suddenly refused on 6 order routes it
// never called, from an address and user agent its history never showed (in its usual network, so
// no other signal): a leak finding with scope_probing over those 6 routes, its standing requests
// left out. kid_cloud's standing refusals come from a new cloud address each time, in its provider's
// network: standing too.
func TestScopeProbingBaseline(t *testing.T) {
	const erpUA, erpIP = "partner-erp/4.2", "198.51.100.10"
	s := newScenario(t)
	s.cfg.Leak.RouteScopes = scopeRoutes
	standing := func(key, client string) []event {
		return every(now.Add(-14*24*time.Hour), now, 10*time.Minute, func(time.Time) (event, bool) {
			return event{KeyID: key, ClientID: client, Outcome: "forbidden", Method: "POST", Route: "/v1/orders",
				IP: erpIP, UA: erpUA, ASN: 64500, ASOrg: "Example Net", Country: "DE"}, true
		})
	}
	var evs []event
	for _, k := range [][2]string{{"kid_erp", "partner-one"}, {"kid_erp2", "partner-two"}} {
		s.keyScopes(k[0], k[1], now.Add(-20*24*time.Hour), "read")
		evs = append(evs, leakSteady(k[0], k[1], now.Add(-15*24*time.Hour), now, time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
		evs = append(evs, standing(k[0], k[1])...)
	}
	// kid_cloud's client runs in a cloud: the same standing refusals come from a new address of
	// its provider's network every time, never the same /24 twice in a row. Still standing.
	s.keyScopes("kid_cloud", "partner-three", now.Add(-20*24*time.Hour), "read")
	evs = append(evs, leakSteady("kid_cloud", "partner-three", now.Add(-15*24*time.Hour), now, time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
	n := 0
	evs = append(evs, every(now.Add(-14*24*time.Hour), now, 10*time.Minute, func(time.Time) (event, bool) {
		n++
		return event{KeyID: "kid_cloud", ClientID: "partner-three", Outcome: "forbidden", Method: "POST", Route: "/v1/orders",
			IP: leakHostIP(100, n*300), UA: erpUA, ASN: 64500, ASOrg: "Example Net", Country: "DE"}, true
	})...)
	probed := []string{"POST /v1/orders/1/cancel", "DELETE /v1/orders/7", "PUT /v1/orders/9", "POST /v1/orders/bulk", "PATCH /v1/orders/3", "POST /v1/orders/export"}
	at := now.Add(-45 * time.Minute)
	for _, r := range probed {
		method, route, _ := strings.Cut(r, " ")
		for range 2 {
			evs = append(evs, event{TS: at, KeyID: "kid_erp2", ClientID: "partner-two", Outcome: "forbidden", Method: method, Route: route,
				IP: "198.51.100.201", UA: "python-requests/2.31", ASN: 64500, ASOrg: "Example Net", Country: "DE"})
			at = at.Add(time.Minute)
		}
	}
	s.events(evs)

	fs := s.leak()
	for _, f := range fs {
		t.Logf("leak %s (score %g): %s", f.KeyID, f.Score, f.Summary)
	}
	f := leakOnly(t, fs)
	if f.KeyID != "kid_erp2" {
		t.Fatalf("leak finding about %s, want only kid_erp2 (kid_erp's and kid_cloud's refusals are their standing misconfiguration)", f.KeyID)
	}
	ev := leakEvidence(t, f)
	p := leakSignalOf(t, ev, leakSignalScopeProbing).Scope
	if !slices.Equal(leakKinds(ev), []string{leakSignalScopeProbing}) || p == nil || p.Requests != 12 || p.RoutesTotal != 6 || p.Callers != 1 || p.Addresses != 1 {
		t.Fatalf("signals %v, probe %+v; want scope_probing alone over 12 requests to the 6 new routes from 1 caller", leakKinds(ev), p)
	}
	var routes []string
	for _, r := range p.Routes {
		routes = append(routes, leakRouteName(r))
	}
	if slices.Contains(routes, "POST /v1/orders") || p.StandingRequests != 6 {
		t.Errorf("probed routes %v, standing requests %d; want the standing POST /v1/orders left out, its 6 requests counted as standing", routes, p.StandingRequests)
	}

	hs, err := NewHygiene(s.conn, s.cfg.Hygiene).WithScopes(s.cfg.Leak).Detect(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]finding.Finding{}
	for _, h := range hs {
		t.Logf("hygiene %s: %s; fields %q", h.KeyID, h.Summary, h.Fields)
		byKey[h.KeyID] = append(byKey[h.KeyID], h)
	}
	for _, key := range []string{"kid_erp", "kid_erp2", "kid_cloud"} {
		if len(byKey[key]) != 1 {
			t.Fatalf("%d hygiene findings about %s, want exactly one (its standing refusals)", len(byKey[key]), key)
		}
	}
	h := byKey["kid_erp"][0]
	hev, _ := h.Evidence.(HygieneEvidence)
	checkFields(t, h, hev.fields())
	if hev.Kind != hygieneStandingForbidden || h.Fingerprint != finding.Fingerprint("hygiene", "kid_erp", "partner-one", hygieneStandingForbidden) ||
		!strings.Contains(h.Summary, "refused on POST /v1/orders on 14 of the last 14 days (needs trade)") || !strings.Contains(h.Summary, "fix its scopes or the client") {
		t.Errorf("hygiene finding %s %q, want the standing refusals of POST /v1/orders", hev.Kind, h.Summary)
	}
	if len(hev.Refused) != 1 || hev.Refused[0].Requests != 14*144 || hev.Refused[0].Callers != 1 {
		t.Errorf("refused routes %+v, want POST /v1/orders: %d requests from 1 caller", hev.Refused, 14*144)
	}
	// A day after the refusals stopped, the finding is gone (its alert resolves).
	later, err := NewHygiene(s.conn, s.cfg.Hygiene).WithScopes(s.cfg.Leak).Detect(context.Background(), now.Add(25*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range later {
		if h.Evidence.(HygieneEvidence).Kind == hygieneStandingForbidden {
			t.Errorf("a day after the refusals stopped: %s", h.Summary)
		}
	}
}

// TestLeakScopeAgainst: the judgement of a window's forbidden calls against the key's history,
// without a database. The history: POST /v1/orders refused 6 times an hour on 14 days from the ERP
// host; GET... nothing else.
func TestLeakScopeAgainst(t *testing.T) {
	cfg := config.Default().Detect.Leak
	cfg.RouteScopes = scopeRoutes
	rules, err := cfg.RouteScopeRules()
	if err != nil {
		t.Fatal(err)
	}
	model := rotation.Build([]rotation.Event{{TS: now.Add(-20 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_erp", Scopes: []string{"read"}}})
	erp := leakScopeCallerID{"AS64500", "partner-erp/4.2"}
	days := make([]uint32, 14)
	for i := range days {
		days[i] = uint32(i)
	}
	hist := &leakScopeHistory{
		routes:  map[[2]string]leakScopeRouteHistory{{"POST", "/v1/orders"}: {requests: 14 * 144, days: days, hours: 14 * 24}},
		callers: map[leakScopeCallerID]bool{erp: true},
	}
	call := func(method, route string, c leakScopeCallerID, n uint64) leakForbiddenCall {
		return leakForbiddenCall{method: method, route: route, caller: c, requests: n}
	}
	stranger := leakScopeCallerID{"AS64666", "python-requests/2.31"}
	for _, tc := range []struct {
		name         string
		calls        []leakForbiddenCall
		hist         *leakScopeHistory
		wantKept     uint64 // requests kept
		wantStanding uint64
	}{
		{"standing", []leakForbiddenCall{call("POST", "/v1/orders", erp, 6)}, hist, 0, 6},
		{"no history read", []leakForbiddenCall{call("POST", "/v1/orders", erp, 6)}, nil, 6, 0},
		{"a new caller on the standing route", []leakForbiddenCall{call("POST", "/v1/orders", erp, 6), call("POST", "/v1/orders", stranger, 5)}, hist, 5, 6},
		{"a burst on the standing route", []leakForbiddenCall{call("POST", "/v1/orders", erp, 60)}, hist, 60, 0},
		{"a new route from the usual caller", []leakForbiddenCall{call("POST", "/v1/orders", erp, 6), call("DELETE", "/v1/orders/1", erp, 5)}, hist, 5, 6},
		{"too few days to stand", []leakForbiddenCall{call("POST", "/v1/orders", erp, 6)},
			&leakScopeHistory{routes: map[[2]string]leakScopeRouteHistory{{"POST", "/v1/orders"}: {requests: 12, days: []uint32{0, 1}, hours: 2}}, callers: hist.callers}, 6, 0},
	} {
		kept, standing := leakScopeAgainst(model, rules, "kid_erp", tc.calls, tc.hist, cfg.ScopeStandingDays, time.Hour)
		var n uint64
		for _, c := range kept {
			n += c.requests
		}
		if n != tc.wantKept || standing != tc.wantStanding {
			t.Errorf("%s: kept %d, standing %d; want %d and %d", tc.name, n, standing, tc.wantKept, tc.wantStanding)
		}
	}
	// Five routes, each refused on its own days and never together: a walk across all of them at
	// once counts whole.
	many := &leakScopeHistory{routes: map[[2]string]leakScopeRouteHistory{}, callers: hist.callers}
	var calls []leakForbiddenCall
	for i := range 5 {
		route := fmt.Sprintf("/v1/orders/%d", i)
		many.routes[[2]string{"POST", route}] = leakScopeRouteHistory{requests: 3, days: []uint32{uint32(3 * i), uint32(3*i + 1), uint32(3*i + 2)}, hours: 3}
		calls = append(calls, call("POST", route, erp, 1))
	}
	if kept, standing := leakScopeAgainst(model, rules, "kid_erp", calls, many, cfg.ScopeStandingDays, time.Hour); len(kept) != 5 || standing != 0 {
		t.Errorf("five standing routes at once: kept %d calls, %d standing; want all 5 kept", len(kept), standing)
	}
	if kept, standing := leakScopeAgainst(model, rules, "kid_erp", calls[:4], many, cfg.ScopeStandingDays, time.Hour); len(kept) != 0 || standing != 4 {
		t.Errorf("four standing routes at once: kept %d calls, %d standing; want none kept", len(kept), standing)
	}
}
