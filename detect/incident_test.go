package detect

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// TestIncidentFindings counts the findings of every detector (lingering, spike, leak, hygiene,
// run at the same instant on one database) per incident, as the person on call receives them.
// Three incidents side by side:
//   - a probing burst: a read-only key tried on 5 trade routes by 40 addresses of a network and
//     country it never used, in the last 30 minutes;
//   - a fleet broken by a revocation: 30 hosts of fleetco never moved to the new key and are
//     refused since the old one was revoked 40 minutes ago;
//   - a straggler fleet: 6 of stragco's 20 hosts are still on the old key 12 hours before its
//     deadline (the other 14 moved a day ago);
//   - a revoked key probed: a day after kid_gone was revoked (its client had moved), 300
//     addresses of a network it never used try it 600 times without a client, and are refused.
//
// Each incident gives at most incidentMaxFindings findings in all, and one of them says how many
// callers there were.
func TestIncidentFindings(t *testing.T) {
	const incidentMaxFindings = 3
	s := newScenario(t)
	s.cfg.Leak.RouteScopes = scopeRoutes
	day := 24 * time.Hour
	host := func(n int) string { return fmt.Sprintf("192.0.2.%d", n+1) }
	var evs []event

	// The probing burst on kid_probe.
	s.keyScopes("kid_probe", "probeco", now.Add(-20*day), "read")
	evs = append(evs, leakSteady("kid_probe", "probeco", now.Add(-8*day), now, time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
	probed := []string{"/v1/orders", "/v1/orders/1", "/v1/orders/2/cancel", "/v1/orders/bulk", "/v1/orders/export"}
	for i := range 40 {
		for j := range 2 {
			evs = append(evs, event{TS: now.Add(-30*time.Minute + time.Duration(i*2+j)*20*time.Second), KeyID: "kid_probe", ClientID: "probeco",
				Outcome: "forbidden", Method: "POST", Route: probed[(i+j)%len(probed)],
				IP: leakHostIP(203, i), UA: "python-requests/2.31", ASN: 64666, ASOrg: "Bulletproof Hosting", Country: "BR"})
		}
	}

	// The fleet broken by a revocation.
	revokedAt := now.Add(-40 * time.Minute)
	s.lifecycle(rotationOf("fleetco", "kid_fleet_old", "kid_fleet_new", now.Add(-3*day), rotation.KeyRevoked, revokedAt)...)
	for h := range 30 {
		evs = append(evs, every(now.Add(-4*day+time.Duration(h)*time.Second), now, 2*time.Minute, func(ts time.Time) (event, bool) {
			e := event{KeyID: "kid_fleet_old", ClientID: "fleetco", IP: host(h), UA: "fleet-agent/3.1", ASN: 64500, ASOrg: "Example Net", Country: "DE"}
			if !ts.Before(revokedAt) {
				e.Outcome = "revoked_key"
			}
			return e, true
		})...)
	}

	// The straggler fleet.
	s.rotate("kid_strag_old", "kid_strag_new", "stragco", now.Add(-2*day), now.Add(12*time.Hour))
	for h := range 20 {
		moved := now.Add(-day)
		evs = append(evs, every(now.Add(-3*day+time.Duration(h)*time.Second), now, 5*time.Minute, func(ts time.Time) (event, bool) {
			e := event{KeyID: "kid_strag_old", ClientID: "stragco", IP: host(100 + h), UA: "strag-worker/1.4", ASN: 64500, ASOrg: "Example Net", Country: "DE"}
			if h >= 6 && !ts.Before(moved) {
				e.KeyID = "kid_strag_new"
			}
			return e, true
		})...)
	}
	// The revoked key probed.
	s.lifecycle(rotationOf("gonecorp", "kid_gone", "kid_gone_new", now.Add(-5*day), rotation.KeyRevoked, now.Add(-day))...)
	evs = append(evs, leakSteady("kid_gone", "gonecorp", now.Add(-12*day), now.Add(-3*day), 2*time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
	evs = append(evs, leakSteady("kid_gone_new", "gonecorp", now.Add(-4*day), now, 2*time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
	for i := range 600 {
		evs = append(evs, event{TS: now.Add(-40*time.Minute + time.Duration(i)*3*time.Second), KeyID: "kid_gone", Outcome: "revoked_key",
			IP: leakHostIP(45, i%300), UA: fmt.Sprintf("python-requests/2.%d", i%7), ASN: 64666, ASOrg: "Bulletproof Hosting", Country: "NL"})
	}
	s.events(evs)

	ctx := context.Background()
	var all []finding.Finding
	for _, d := range []Detector{NewLingering(s.conn, s.cfg.Lingering), NewSpike(s.conn, s.cfg.Spike), NewLeak(s.conn, s.cfg.Leak),
		NewHygiene(s.conn, s.cfg.Hygiene).WithScopes(s.cfg.Leak)} {
		fs, err := d.Detect(ctx, now)
		if err != nil {
			t.Fatalf("%s: %v", d.Name(), err)
		}
		all = append(all, fs...)
	}
	incidents := []struct {
		name    string
		keys    []string
		callers int
	}{
		{"probing burst", []string{"kid_probe"}, 40},
		{"fleet broken by a revocation", []string{"kid_fleet_old", "kid_fleet_new"}, 30},
		{"straggler fleet", []string{"kid_strag_old", "kid_strag_new"}, 6},
		{"revoked key probed", []string{"kid_gone", "kid_gone_new"}, 300},
	}
	byIncident := map[string][]finding.Finding{}
	for _, f := range all {
		i := slices.IndexFunc(incidents, func(in struct {
			name    string
			keys    []string
			callers int
		}) bool {
			return slices.Contains(in.keys, f.KeyID)
		})
		if i < 0 {
			t.Errorf("a finding about no incident: %s %s: %s", f.Detector, f.KeyID, f.Summary)
			continue
		}
		byIncident[incidents[i].name] = append(byIncident[incidents[i].name], f)
	}
	for _, in := range incidents {
		t.Run(in.name, func(t *testing.T) {
			fs := byIncident[in.name]
			said := false
			for _, f := range fs {
				n := incidentCallers(f)
				t.Logf("%s %s (%s), says %v callers: %s", f.Detector, f.Severity, f.KeyID, n, f.Summary)
				said = said || slices.Contains(n, in.callers)
			}
			t.Logf("%d finding(s)", len(fs))
			if len(fs) == 0 || len(fs) > incidentMaxFindings {
				t.Errorf("%d findings, want 1 to %d", len(fs), incidentMaxFindings)
			}
			if !said {
				t.Errorf("no finding says there were %d callers", in.callers)
			}
		})
	}
}

// incidentCallers returns the caller counts a finding's evidence states.
func incidentCallers(f finding.Finding) []int {
	var out []int
	switch ev := f.Evidence.(type) {
	case SpikeEvidence:
		out = append(out, int(ev.Callers))
	case LeakEvidence:
		for _, s := range ev.Signals {
			if s.Scope != nil {
				out = append(out, s.Scope.Callers)
			}
			if s.Fanout != nil {
				out = append(out, int(s.Fanout.DistinctIPs))
			}
		}
	case LingeringEvidence:
		out = append(out, ev.Callers, ev.Caller.SubCallers)
	}
	return out
}
