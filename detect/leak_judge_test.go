package detect

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// The leak detector's judgement from hand-built facts, without a database: what Detect would have
// read, and what judge makes of it.

// leakFacts is a leakRun as of now with the default configuration, kid_a's uses and client, and
// the key's requests in the window.
func leakFacts(model *rotation.Model, uses []leakUse, windowRequests uint64) *leakRun {
	cfg := config.Default().Detect.Leak
	windowStart := now.Add(-time.Duration(cfg.Window))
	if model == nil {
		model = rotation.Build(nil)
	}
	return &leakRun{cfg: cfg, now: now, windowStart: windowStart, baseStart: windowStart.Add(-time.Duration(cfg.Baseline)),
		newStart: now.Add(-time.Duration(cfg.NewFor)), model: model, places: map[string][]leakUse{"kid_a": uses},
		clients: map[string]string{"kid_a": "acme-billing"}, windowRequests: map[string]uint64{"kid_a": windowRequests}}
}

// usualUse is eight days of kid_a's traffic from its usual network in DE, up to a minute ago.
var usualUse = leakUse{network: "AS64500", country: "DE", asOrg: "Example Net", asn: 64500,
	first: now.Add(-8 * 24 * time.Hour), last: now.Add(-time.Minute), requests: 69000, beforeWindowDay: 66000}

func TestLeakJudge(t *testing.T) {
	brazil := leakUse{network: "AS64501", country: "BR", asOrg: "Other Net", asn: 64501,
		first: now.Add(-40 * time.Minute), last: now.Add(-25 * time.Minute), requests: 15, sampleIPs: []string{"203.0.113.7"}, sampleUAs: []string{"curl/8.4.0"}}
	revoked := rotation.Build([]rotation.Event{
		{TS: now.Add(-10 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_a", ClientID: "acme-billing"},
		{TS: now.Add(-2 * time.Hour), Type: rotation.KeyRevoked, KeyID: "kid_a", ClientID: "acme-billing"},
	})
	few := brazil
	few.requests = 3
	australia := leakUse{network: "AS64502", country: "AU", asOrg: "Far Net", asn: 64502,
		first: now.Add(-50 * time.Second), last: now.Add(-10 * time.Second), requests: 20}
	for _, tc := range []struct {
		name      string
		model     *rotation.Model
		uses      []leakUse
		hops      []LeakTravel
		severity  finding.Severity // 0: no finding
		score     float64
		signals   []string
		inSummary string
	}{
		{name: "new network and country", uses: []leakUse{usualUse, brazil}, severity: finding.Warning, score: 70,
			signals:   []string{leakSignalNewNetwork, leakSignalNewCountry},
			inSummary: "kid_a (acme-billing) used from new network AS64501 (Other Net) in new country BR: 15 requests (4.0% of its traffic) in the last hour (score 70)"},
		{name: "too few requests from the new place", uses: []leakUse{usualUse, few}},
		{name: "revoked key tried from a new network", model: revoked, uses: []leakUse{usualUse, few}, severity: finding.Warning, score: 60,
			signals: []string{leakSignalRevokedNewNetwork}, inSummary: "revoked key kid_a (acme-billing) tried from new network AS64501"},
		{name: "impossible travel", uses: []leakUse{usualUse, australia}, severity: finding.Critical, score: 130,
			hops: leakHops([]leakSpan{{country: "DE", first: now.Add(-time.Hour), last: now.Add(-61 * time.Second), requests: 300},
				{country: "AU", first: australia.first, last: australia.last, requests: australia.requests}}, now.Add(-time.Hour), 10),
			signals: []string{leakSignalNewNetwork, leakSignalNewCountry, leakSignalImpossibleTravel}, inSummary: "impossible travel DE→AU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := leakFacts(tc.model, tc.uses, 375)
			r.hops = map[string][]LeakTravel{"kid_a": tc.hops}
			f, ok := r.judge("leak", "kid_a")
			if tc.severity == 0 {
				if ok {
					t.Fatalf("finding %s, want none", f.Summary)
				}
				return
			}
			if !ok {
				t.Fatal("no finding")
			}
			ev := leakEvidence(t, f)
			if f.Severity != tc.severity || f.Score != tc.score || !slices.Equal(leakKinds(ev), tc.signals) || f.ClientID != "acme-billing" {
				t.Fatalf("%s score %g signals %v client %s; want %s %g %v acme-billing", f.Severity, f.Score, leakKinds(ev), f.ClientID, tc.severity, tc.score, tc.signals)
			}
			if !strings.Contains(f.Summary, tc.inSummary) {
				t.Errorf("summary %q lacks %q", f.Summary, tc.inSummary)
			}
			if ev.WindowRequests != 375 || ev.Baseline.Requests != 66000 || !slices.Equal(ev.Baseline.Countries, []string{"DE"}) {
				t.Errorf("evidence %+v: want 375 requests in the window against a baseline of 66000 from DE", ev)
			}
		})
	}
}

// TestLeakFanouts: an hour's distinct addresses against the key's baseline by hour of day.
func TestLeakFanouts(t *testing.T) {
	seasonal := map[int][]float64{11: {5, 5, 5, 5, 5, 5, 5, 5}}
	flat := map[int][]float64{}
	for h := range 24 {
		flat[h] = []float64{4, 6}
	}
	hour := now.Add(-time.Hour)
	got := leakFanouts(map[string][]leakHour{
		"kid_fan":     {{hour, 500}, {now, 120}},
		"kid_calm":    {{hour, 15}}, // z 4.5
		"kid_flat":    {{hour, 60}},
		"kid_unknown": {{hour, 500}}, // no baseline at all
	}, map[string]map[int][]float64{"kid_fan": seasonal, "kid_calm": seasonal, "kid_flat": flat}, 6)
	if len(got) != 2 || got["kid_fan"] == nil || got["kid_flat"] == nil {
		t.Fatalf("fan-outs %v, want kid_fan and kid_flat", got)
	}
	if f := got["kid_fan"]; f.DistinctIPs != 500 || !f.Hour.Equal(hour) || f.BaselineMedian != 5 || f.BaselineMAD != 0 || !f.Seasonal ||
		f.BaselineHours != 8 || f.Z != leakRound2(495/math.Sqrt(5)) {
		t.Errorf("kid_fan %+v: want 500 addresses in the hour from 11:00 against a seasonal median of 5", f)
	}
	if f := got["kid_flat"]; f.Seasonal || f.BaselineHours != 48 || f.BaselineMedian != 5 {
		t.Errorf("kid_flat %+v: want the whole day's 48 hours, median 5", f)
	}
}

// TestLeakScopeProbes: forbidden routes count when a rule covers them and the key's stated scopes
// do not grant them, and only from ScopeProbingMinRequests on.
func TestLeakScopeProbes(t *testing.T) {
	cfg := config.Default().Detect.Leak
	cfg.RouteScopes = scopeRoutes
	rules, err := cfg.RouteScopeRules()
	if err != nil {
		t.Fatal(err)
	}
	model := rotation.Build([]rotation.Event{
		{TS: now.Add(-20 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_ro", Scopes: []string{"read"}},
		{TS: now.Add(-20 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_few", Scopes: []string{"read"}},
		{TS: now.Add(-20 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_open"},
	})
	route := func(method, path string, n uint64) LeakProbedRoute {
		return LeakProbedRoute{Method: method, Route: path, Requests: n, SampleIPs: []string{"b", "a"}}
	}
	got := leakScopeProbes(model, rules, map[string][]LeakProbedRoute{
		"kid_ro": {route("POST", "/v1/orders", 10), route("GET", "/v1/orders", 50), route("DELETE", "/v1/orders/42", 5),
			route("POST", "/v2/admin/users", 40)},
		"kid_few":  {route("POST", "/v1/orders", 4)},
		"kid_open": {route("POST", "/v1/orders", 40)},
	}, uint64(cfg.ScopeProbingMinRequests))
	if len(got) != 1 || got["kid_ro"] == nil {
		t.Fatalf("probes %v, want kid_ro's only", got)
	}
	p := got["kid_ro"]
	if p.Requests != 15 || p.RoutesTotal != 2 || !slices.Equal(p.KeyScopes, []string{"read"}) ||
		p.Routes[0].Route != "/v1/orders" || !slices.Equal(p.Routes[0].Scopes, []string{"trade"}) || p.Routes[1].Route != "/v1/orders/42" ||
		!slices.Equal(p.Routes[0].SampleIPs, []string{"a", "b"}) {
		t.Errorf("kid_ro's probe %+v: want 15 forbidden requests to the two trade routes, busiest first", p)
	}
}

// TestLeakJudgeNewForAndTravel: a new place persisting over hours, and hops between countries the
// key knows, judged by its history.
func TestLeakJudgeNewForAndTravel(t *testing.T) {
	slow := leakUse{network: "AS64666", country: "BR", first: now.Add(-20 * time.Hour), last: now.Add(-20 * time.Minute), requests: 60}
	var slowHours []time.Time
	for h := range 20 {
		slowHours = append(slowHours, now.Add(-time.Duration(h+1)*time.Hour))
	}
	stay := leakUse{network: "AS7922", country: "US", first: now.Add(-8 * 24 * time.Hour), last: now.Add(-5 * time.Minute), requests: 5000, beforeWindowDay: 4900}
	hop := leakHops([]leakSpan{{country: "DE", first: now.Add(-50 * time.Minute), last: now.Add(-32 * time.Minute), requests: 30},
		{country: "US", first: now.Add(-10 * time.Minute), last: now.Add(-5 * time.Minute), requests: 10}}, now.Add(-time.Hour), 10)
	if len(hop) != 1 || hop[0].From != "DE" || hop[0].To != "US" || hop[0].GapMinutes != 22 {
		t.Fatalf("hops %+v, want DE → US 22 minutes apart", hop)
	}
	onePlace := LeakHistory{Hours: 180, UserAgentFamilies: 1, Networks: 2}
	multi := LeakHistory{Hours: 180, HoursTwoCountries: 170, UserAgentFamilies: 1, Networks: 2}
	vpn := LeakHistory{Hours: 180, UserAgentFamilies: 1, Networks: 2, Switches: []string{"US>DE"}}
	team := LeakHistory{Hours: 180, UserAgentFamilies: 3, Networks: 2}
	var roaming []leakUse
	for i, cc := range []string{"FR", "ES", "IT", "PT", "NL", "BE"} {
		first := now.Add(-7*24*time.Hour + time.Duration(i)*12*time.Hour)
		roaming = append(roaming, leakUse{network: "AS6500" + cc, country: cc, first: first, last: first.Add(24 * time.Hour), requests: 70, beforeWindowDay: 70})
	}
	for _, tc := range []struct {
		name    string
		uses    []leakUse
		hours   []time.Time
		hops    []LeakTravel
		history *LeakHistory
		score   float64
		signals []string
	}{
		{name: "slow leak persisting over 20 hours", uses: []leakUse{usualUse, slow}, hours: slowHours, score: 70,
			signals: []string{leakSignalNewNetwork, leakSignalNewCountry}},
		{name: "a one-off two hours", uses: []leakUse{usualUse, slow}, hours: slowHours[:2]},
		{name: "slow newcomer on a key that takes up places routinely", uses: append([]leakUse{usualUse, slow}, roaming...), hours: slowHours},
		{name: "hop between known countries, one place at a time", uses: []leakUse{usualUse, stay}, hops: hop, history: &onePlace, score: 60,
			signals: []string{leakSignalImpossibleTravel}},
		{name: "hop between known countries of a multi-region key", uses: []leakUse{usualUse, stay}, hops: hop, history: &multi},
		{name: "hop between known countries without a history", uses: []leakUse{usualUse, stay}, hops: hop},
		{name: "hop between known countries the key switched between before", uses: []leakUse{usualUse, stay}, hops: hop, history: &vpn},
		{name: "hop between known countries of a key of several user agents", uses: []leakUse{usualUse, stay}, hops: hop, history: &team},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := leakFacts(nil, tc.uses, 375)
			r.activity = map[string]map[leakPlaceID]leakActivity{"kid_a": {{slow.network, slow.country}: {hours: tc.hours}}}
			r.hops, r.history = map[string][]LeakTravel{"kid_a": tc.hops}, map[string]LeakHistory{}
			if tc.history != nil {
				r.history["kid_a"] = *tc.history
			}
			f, ok := r.judge("leak", "kid_a")
			if tc.score == 0 {
				if ok {
					t.Fatalf("finding %s, want none", f.Summary)
				}
				return
			}
			if !ok {
				t.Fatal("no finding")
			}
			ev := leakEvidence(t, f)
			if f.Score != tc.score || !slices.Equal(leakKinds(ev), tc.signals) {
				t.Fatalf("score %g signals %v, want %g %v: %s", f.Score, leakKinds(ev), tc.score, tc.signals, f.Summary)
			}
		})
	}
}

// TestLeakHops: runs of one country in time order; a country left and come back to around another
// is two hops, two countries at the same time none.
func TestLeakHops(t *testing.T) {
	at := func(m int) time.Time { return now.Add(time.Duration(m-60) * time.Minute) } // minutes from 11:00
	span := func(cc string, from, to int, n uint64) leakSpan {
		return leakSpan{country: cc, first: at(from), last: at(to), requests: n}
	}
	windowStart := now.Add(-time.Hour)
	hops := leakHops([]leakSpan{span("DE", -60, 10, 200), span("US", 20, 30, 10), span("DE", 40, 58, 30)}, windowStart, 10)
	if len(hops) != 2 || hops[0].GapMinutes != 10 || hops[1].GapMinutes != 10 ||
		!slices.ContainsFunc(hops, func(h LeakTravel) bool { return h.From == "DE" && h.To == "US" && h.FromSeen.Equal(at(10)) }) ||
		!slices.ContainsFunc(hops, func(h LeakTravel) bool { return h.From == "US" && h.To == "DE" && h.ToSeen.Equal(at(40)) }) {
		t.Errorf("hops %+v, want DE→US at 11:20 and US→DE at 11:40", hops)
	}
	if hops := leakHops([]leakSpan{span("DE", 0, 59, 200), span("US", 20, 30, 10)}, windowStart, 10); len(hops) != 0 {
		t.Errorf("two countries at the same time: hops %+v, want none", hops)
	}
	if hops := leakHops([]leakSpan{span("DE", 0, 10, 200), span("US", 20, 30, 9)}, windowStart, 10); len(hops) != 0 {
		t.Errorf("an arrival below min_requests: hops %+v, want none", hops)
	}
	if hops := leakHops([]leakSpan{span("DE", 0, 10, 200), span("NL", 20, 30, 50)}, windowStart, 10); len(hops) != 0 {
		t.Errorf("neighbours: hops %+v, want none", hops)
	}
}
