package detect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// leak runs the leak detector as of now with the scenario's configuration.
func (s *scenario) leak() []finding.Finding {
	s.t.Helper()
	fs, err := NewLeak(s.conn, s.cfg.Leak).Detect(context.Background(), now)
	if err != nil {
		s.t.Fatal(err)
	}
	return fs
}

// leakSteady is one event per interval in [from, to) from ips in turn, all of one network and country.
func leakSteady(key, client string, from, to time.Time, interval time.Duration, ips []string, asn uint32, org, country string) []event {
	i := 0
	return every(from, to, interval, func(time.Time) (event, bool) {
		i++
		return event{KeyID: key, ClientID: client, IP: ips[i%len(ips)], ASN: asn, ASOrg: org, Country: country}, true
	})
}

// leakHostIP returns the n-th address of a large synthetic range, each /24 holding 256 of them.
func leakHostIP(first byte, n int) string {
	return fmt.Sprintf("%d.%d.%d.%d", first, (n>>16)&255, (n>>8)&255, n&255)
}

func leakEvidence(t *testing.T, f finding.Finding) LeakEvidence {
	t.Helper()
	ev, ok := f.Evidence.(LeakEvidence)
	if !ok {
		t.Fatalf("evidence is %T, want LeakEvidence", f.Evidence)
	}
	checkFields(t, f, ev.fields())
	if want := strings.Join(leakKinds(ev), ","); f.Labels[LabelLeakSignals] != want {
		t.Errorf("label signals %q, want %q", f.Labels[LabelLeakSignals], want)
	}
	return ev
}

func leakKinds(ev LeakEvidence) []string {
	var out []string
	for _, s := range ev.Signals {
		out = append(out, s.Kind)
	}
	return out
}

func leakSignalOf(t *testing.T, ev LeakEvidence, kind string) LeakSignal {
	t.Helper()
	for _, s := range ev.Signals {
		if s.Kind == kind {
			return s
		}
	}
	t.Fatalf("no %s signal in %+v", kind, ev.Signals)
	return LeakSignal{}
}

func leakOnly(t *testing.T, fs []finding.Finding) finding.Finding {
	t.Helper()
	if len(fs) != 1 {
		t.Fatalf("got %d findings, want 1: %+v", len(fs), fs)
	}
	return fs[0]
}

var leakUsualIPs = []string{"198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13"}

// A key with 8 days of leakSteady traffic from one network in DE gets 15 requests in the last hour from a
// network and country it never used: new network + new country = 70, a warning.
func TestLeakNewNetworkAndCountry(t *testing.T) {
	for _, tc := range []struct {
		name, network, asOrg string
		asn                  uint32
		usual, newIPs        []string
	}{
		{name: "known ASN", network: "AS64501", asOrg: "Other Net", asn: 64501, usual: leakUsualIPs, newIPs: []string{"203.0.113.7"}},
		{name: "IPv4 without ASN", network: "192.0.2.0/24", usual: leakUsualIPs, newIPs: []string{"192.0.2.7", "192.0.2.8"}},
		{name: "IPv6 without ASN", network: "2001:db8:77::/48", usual: []string{"2001:db8:1:1::10", "2001:db8:1:2::10"},
			newIPs: []string{"2001:db8:77:1::7", "2001:db8:77:2::7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case is a database of its own
			s := newScenario(t)
			usualASN, usualOrg := uint32(64500), "Example Net"
			if tc.asn == 0 {
				usualASN, usualOrg = 0, ""
			}
			evs := leakSteady("kid_live_a", "acme-billing", now.Add(-8*24*time.Hour), now, 10*time.Second, tc.usual, usualASN, usualOrg, "DE")
			i := 0
			evs = append(evs, every(now.Add(-40*time.Minute), now.Add(-25*time.Minute), time.Minute, func(time.Time) (event, bool) {
				i++
				return event{KeyID: "kid_live_a", ClientID: "acme-billing", IP: tc.newIPs[i%len(tc.newIPs)], ASN: tc.asn, ASOrg: tc.asOrg,
					Country: "BR", UA: "curl/8.4.0"}, true
			})...)
			s.events(evs)

			f := leakOnly(t, s.leak())
			if f.Severity != finding.Warning || f.Score != 70 || f.KeyID != "kid_live_a" || f.ClientID != "acme-billing" || f.Detector != "leak" {
				t.Fatalf("finding = %s score %g key %s client %s; want warning 70 kid_live_a acme-billing", f.Severity, f.Score, f.KeyID, f.ClientID)
			}
			if f.Fingerprint != finding.Fingerprint("leak", "kid_live_a", "acme-billing", "") {
				t.Errorf("fingerprint %s is not the detector's, key's and client's", f.Fingerprint)
			}
			if _, err := f.EvidenceJSON(); err != nil {
				t.Fatal(err)
			}
			ev := leakEvidence(t, f)
			if got := leakKinds(ev); !slices.Equal(got, []string{leakSignalNewNetwork, leakSignalNewCountry}) {
				t.Fatalf("signals = %v, want new network and new country", got)
			}
			net := leakSignalOf(t, ev, leakSignalNewNetwork).Places
			if len(net) != 1 || net[0].Network != tc.network || net[0].ASOrg != tc.asOrg || !slices.Equal(net[0].Countries, []string{"BR"}) ||
				net[0].Requests != 15 || net[0].Failures != 0 || len(net[0].SampleIPs) != len(tc.newIPs) ||
				!slices.Equal(net[0].SampleUserAgents, []string{"curl/8.4.0"}) {
				t.Fatalf("new network = %+v, want %s (%s) in BR, 15 requests from %v with curl", net, tc.network, tc.asOrg, tc.newIPs)
			}
			for _, ip := range tc.newIPs {
				if !slices.Contains(net[0].SampleIPs, ip) {
					t.Errorf("sample IPs %v miss %s", net[0].SampleIPs, ip)
				}
			}
			// 360 leakSteady requests in the hour plus the 15.
			if ev.WindowRequests != 375 || net[0].Share != 0.04 {
				t.Errorf("window requests %d, share %g; want 375 and 0.04", ev.WindowRequests, net[0].Share)
			}
			if want := now.Add(-40 * time.Minute); !net[0].FirstSeen.Equal(want) || !net[0].LastSeen.Equal(want.Add(14*time.Minute)) {
				t.Errorf("new network seen %s to %s, want %s to %s", net[0].FirstSeen, net[0].LastSeen, want, want.Add(14*time.Minute))
			}
			country := leakSignalOf(t, ev, leakSignalNewCountry).Places
			if len(country) != 1 || country[0].Country != "BR" || country[0].Requests != 15 || !slices.Equal(country[0].Networks, []string{tc.network}) {
				t.Fatalf("new country = %+v, want BR with 15 requests over %s", country, tc.network)
			}
			if !slices.Equal(ev.Baseline.Countries, []string{"DE"}) || ev.Baseline.NetworksTotal != 1 || ev.Baseline.Requests < 100 ||
				!ev.Baseline.End.Equal(now.Add(-48*time.Hour)) || !ev.Baseline.Start.Equal(now.Add(-time.Hour-30*24*time.Hour)) {
				t.Errorf("baseline = %+v, want DE over one network, ending where new_for (48 h) begins", ev.Baseline)
			}
			want := fmt.Sprintf("kid_live_a (acme-billing) used from new network %s", tc.network)
			if !strings.HasPrefix(f.Summary, want) || !strings.Contains(f.Summary, "in new country BR: 15 requests (4.0% of its traffic) in the last hour") {
				t.Errorf("summary %q, want it to start %q and name BR, 15 requests, 4.0%%", f.Summary, want)
			}
			// A scheduled run lands a few milliseconds past the minute: the minutes of the window are
			// the same (key_minutes's minute compared at the whole second), so are the shares.
			late, err := NewLeak(s.conn, s.cfg.Leak).Detect(context.Background(), now.Add(5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if ev := leakEvidence(t, leakOnly(t, late)); ev.WindowRequests != 375 || leakSignalOf(t, ev, leakSignalNewNetwork).Places[0].Share != 0.04 {
				t.Errorf("run 5 ms later: window requests %d, share %g; want 375 and 0.04", ev.WindowRequests, leakSignalOf(t, ev, leakSignalNewNetwork).Places[0].Share)
			}
		})
	}
}

// A revoked key tried from a network it never used: revoked + new network = 100, critical. Its old
// client still trying it from the usual network is not part of it.
func TestLeakRevokedKeyTriedFromNewNetwork(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	revokedAt := now.Add(-2 * 24 * time.Hour)
	s.lifecycle(
		rotation.Event{TS: now.Add(-40 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: "kid_gone", ClientID: "acme-billing"},
		rotation.Event{TS: revokedAt, Type: rotation.KeyRevoked, KeyID: "kid_gone", ClientID: "acme-billing", Reason: "compromised laptop"},
	)
	evs := leakSteady("kid_gone", "acme-billing", now.Add(-8*24*time.Hour), revokedAt, 30*time.Second, leakUsualIPs, 64500, "Example Net", "DE")
	evs = append(evs, every(now.Add(-50*time.Minute), now.Add(-40*time.Minute), time.Minute, func(time.Time) (event, bool) {
		return event{KeyID: "kid_gone", ClientID: "acme-billing", Outcome: "revoked_key", IP: "198.51.100.10", ASN: 64500, ASOrg: "Example Net", Country: "DE"}, true
	})...)
	evs = append(evs, every(now.Add(-30*time.Minute), now.Add(-18*time.Minute), time.Minute, func(time.Time) (event, bool) {
		return event{KeyID: "kid_gone", ClientID: "acme-billing", Outcome: "revoked_key", IP: "203.0.113.66", ASN: 64666, ASOrg: "Bulletproof Hosting", Country: "DE", UA: "python-requests/2.31"}, true
	})...)
	s.events(evs)

	f := leakOnly(t, s.leak())
	if f.Severity != finding.Critical || f.Score != 100 {
		t.Fatalf("finding = %s score %g, want critical 100: %s", f.Severity, f.Score, f.Summary)
	}
	ev := leakEvidence(t, f)
	if ev.KeyState != "revoked" || !slices.Equal(leakKinds(ev), []string{leakSignalRevokedNewNetwork, leakSignalNewNetwork}) {
		t.Fatalf("state %s, signals %v; want revoked with revoked_new_network and new_network", ev.KeyState, leakKinds(ev))
	}
	places := leakSignalOf(t, ev, leakSignalRevokedNewNetwork).Places
	if len(places) != 1 || places[0].Network != "AS64666" || places[0].Requests != 12 || places[0].Failures != 12 ||
		!slices.Equal(places[0].SampleIPs, []string{"203.0.113.66"}) || !slices.Equal(places[0].SampleUserAgents, []string{"python-requests/2.31"}) {
		t.Fatalf("revoked key's new networks = %+v, want AS64666 with 12 failed attempts from 203.0.113.66", places)
	}
	if want := "revoked key kid_gone (acme-billing) tried from new network AS64666 (Bulletproof Hosting) in DE: 12 requests"; !strings.HasPrefix(f.Summary, want) {
		t.Errorf("summary %q, want it to start %q", f.Summary, want)
	}
}

// DE until 30 minutes ago, then AU from 10 minutes ago, over the same network: a new country and a
// hand-over ~16,000 km apart in 20 minutes = 30 + 60 = 90, a warning.
func TestLeakImpossibleTravel(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	evs := leakSteady("kid_travel", "globex", now.Add(-8*24*time.Hour), now.Add(-30*time.Minute), 30*time.Second, leakUsualIPs, 13335, "Cloudflare", "DE")
	evs = append(evs, leakSteady("kid_travel", "globex", now.Add(-10*time.Minute), now, 30*time.Second, []string{"104.28.1.1"}, 13335, "Cloudflare", "AU")...)
	s.events(evs)

	f := leakOnly(t, s.leak())
	ev := leakEvidence(t, f)
	if f.Severity != finding.Warning || f.Score != 90 || !slices.Equal(leakKinds(ev), []string{leakSignalNewCountry, leakSignalImpossibleTravel}) {
		t.Fatalf("finding %s score %g signals %v, want warning 90 from new country + impossible travel", f.Severity, f.Score, leakKinds(ev))
	}
	trips := leakSignalOf(t, ev, leakSignalImpossibleTravel).Travel
	if len(trips) != 1 {
		t.Fatalf("travel = %+v, want DE→AU", trips)
	}
	tr := trips[0]
	if tr.From != "DE" || tr.To != "AU" || tr.KM < 14000 || tr.KM > 16500 || tr.GapMinutes != 20.5 ||
		!tr.FromSeen.Equal(now.Add(-30*time.Minute-30*time.Second)) || !tr.ToSeen.Equal(now.Add(-10*time.Minute)) || tr.KMPerHour < 40000 {
		t.Fatalf("travel = %+v, want DE (last %s) → AU (first %s), ~15,000 km in 20.5 min", tr, now.Add(-30*time.Minute-30*time.Second), now.Add(-10*time.Minute))
	}
	if !strings.Contains(f.Summary, "new country AU via AS13335") || !strings.Contains(f.Summary, "impossible travel DE→AU") {
		t.Errorf("summary %q, want the new country and the travel", f.Summary)
	}
}

// A key with 5 addresses an hour for 8 days suddenly shows 500 in the last hour from its usual
// network. The fan-out signal (40) alone stays below the warning score (60) by design: a key
// fanning out within its own network is a deployment change as often as a leak. With a new network
// as well it fires; with a lower warning score the fan-out shows alone.
func TestLeakFanout(t *testing.T) {
	for _, tc := range []struct {
		name         string
		newNetwork   bool
		warningScore float64
		want         []string
	}{
		{name: "alone is below the warning score", warningScore: 60},
		{name: "with a new network", newNetwork: true, warningScore: 60, want: []string{leakSignalNewNetwork, leakSignalFanout}},
		{name: "alone with warning score 40", warningScore: 40, want: []string{leakSignalFanout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case is a database of its own
			s := newScenario(t)
			s.cfg.Leak.WarningScore = tc.warningScore
			evs := leakSteady("kid_fan", "initech", now.Add(-8*24*time.Hour), now.Add(-time.Hour), time.Minute,
				[]string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}, 64500, "Example Net", "DE")
			for i := range 500 {
				evs = append(evs, event{TS: now.Add(-55*time.Minute + time.Duration(i)*6*time.Second), KeyID: "kid_fan", ClientID: "initech",
					IP: leakHostIP(100, 64<<16+i), ASN: 64500, ASOrg: "Example Net", Country: "DE"})
			}
			if tc.newNetwork {
				evs = append(evs, leakSteady("kid_fan", "initech", now.Add(-20*time.Minute), now.Add(-8*time.Minute), time.Minute,
					[]string{"203.0.113.9"}, 64501, "Other Net", "DE")...)
			}
			s.events(evs)

			for run := range 2 { // the first run reads the hours from key_ips_1h, the second those the job finalized
				if run == 1 {
					if err := NewIPHours(s.conn, s.cfg.Leak).Run(context.Background(), now); err != nil {
						t.Fatal(err)
					}
				}
				fs := s.leak()
				var finalized uint64
				if err := s.conn.QueryRow(context.Background(), "SELECT count() FROM key_ip_hours").Scan(&finalized); err != nil {
					t.Fatal(err)
				}
				if (run == 0) != (finalized == 0) {
					t.Fatalf("run %d: key_ip_hours holds %d rows", run, finalized)
				}
				if tc.want == nil {
					if len(fs) != 0 {
						t.Fatalf("run %d: got %+v, want nothing", run, fs)
					}
					continue
				}
				ev := leakEvidence(t, leakOnly(t, fs))
				if got := leakKinds(ev); !slices.Equal(got, tc.want) {
					t.Fatalf("run %d: signals %v, want %v", run, got, tc.want)
				}
				fan := leakSignalOf(t, ev, leakSignalFanout).Fanout
				if fan.DistinctIPs < 480 || fan.DistinctIPs > 530 || fan.BaselineMedian != 5 || fan.BaselineMAD != 0 || fan.Z < 100 ||
					!fan.Seasonal || fan.BaselineHours < 7 || !fan.Hour.Equal(now.Add(-time.Hour)) {
					t.Fatalf("run %d: fan-out = %+v, want ~500 distinct IPs in the hour from 11:00 against a seasonal median of 5", run, fan)
				}
			}
		})
	}
}

// Keys that look unusual but are not leaked stay quiet.
func TestLeakQuietOnBenignLookalikes(t *testing.T) {
	start := now.Add(-8 * 24 * time.Hour)
	for _, tc := range []struct {
		name string
		load func(s *scenario)
	}{
		{"mobile key fanning out over thousands of addresses in the same networks", func(s *scenario) {
			nets := []struct {
				asn     uint32
				org, cc string
			}{{64510, "Mobile One", "DE"}, {64511, "Mobile Two", "DE"}, {64512, "Mobile Three", "AT"}}
			var evs []event
			n := 0
			for h := start; h.Before(now); h = h.Add(time.Hour) {
				count := 1700 + int(h.Unix()/3600*7919%600)
				for i := range count {
					nw := nets[i%len(nets)]
					evs = append(evs, event{TS: h.Add(time.Duration(i) * time.Hour / time.Duration(count)), KeyID: "kid_mobile", ClientID: "acme-app",
						IP: leakHostIP(10, n), ASN: nw.asn, ASOrg: nw.org, Country: nw.cc, UA: "acme-ios/5.2"})
					n++
				}
			}
			s.events(evs)
		}},
		{"CI on rotating cloud addresses within one ASN", func(s *scenario) {
			var evs []event
			job := 0
			for h := start; h.Before(now); h = h.Add(time.Hour) {
				for j := range 20 {
					ip := leakHostIP(3, job*300) // a fresh address, in a fresh /24, for every job
					job++
					for r := range 10 {
						evs = append(evs, event{TS: h.Add(time.Duration(j)*3*time.Minute + time.Duration(r)*time.Second), KeyID: "kid_ci", ClientID: "acme-ci",
							IP: ip, ASN: 16509, ASOrg: "Amazon.com, Inc.", Country: "US", UA: "github-actions"})
					}
				}
			}
			s.events(evs)
		}},
		{"old and new key side by side during a rotation", func(s *scenario) {
			started := now.Add(-2 * 24 * time.Hour)
			s.lifecycle(
				rotation.Event{TS: start.Add(-time.Hour), Type: rotation.KeyCreated, KeyID: "kid_web_old", ClientID: "acme-web"},
				rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: "kid_web_old", ClientID: "acme-web", NewKeyID: "kid_web_new", GraceUntil: now.Add(5 * 24 * time.Hour)},
			)
			site1 := []string{"198.51.100.20"}
			site2 := []string{"192.0.2.30"}
			// Site 1 (DE) moved to the new key when the rotation started; site 2 (FR) moves in the last hour.
			evs := leakSteady("kid_web_old", "acme-web", start, started, 30*time.Second, site1, 64520, "Site One", "DE")
			evs = append(evs, leakSteady("kid_web_new", "acme-web", started, now, 30*time.Second, site1, 64520, "Site One", "DE")...)
			evs = append(evs, leakSteady("kid_web_old", "acme-web", start, now.Add(-30*time.Minute), 30*time.Second, site2, 64521, "Site Two", "FR")...)
			evs = append(evs, leakSteady("kid_web_new", "acme-web", now.Add(-40*time.Minute), now, 30*time.Second, site2, 64521, "Site Two", "FR")...)
			s.events(evs)
		}},
		{"key without ASN data staying within its /24 and /48", func(s *scenario) {
			var evs []event
			i := 0
			evs = append(evs, every(start, now, 20*time.Second, func(ts time.Time) (event, bool) {
				i++
				ip := fmt.Sprintf("203.0.113.%d", i%200)
				if i%2 == 0 {
					ip = fmt.Sprintf("2001:db8:aa:%x::%x", i%500, i%7+1)
				}
				if ts.After(now.Add(-time.Hour)) { // new hosts, same prefixes
					ip = fmt.Sprintf("203.0.113.%d", 200+i%50)
					if i%2 == 0 {
						ip = fmt.Sprintf("2001:db8:aa:f%03x::99", i%500)
					}
				}
				return event{KeyID: "kid_noasn", ClientID: "legacy-batch", IP: ip, Country: "DE"}, true
			})...)
			s.events(evs)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case is a database of its own
			s := newScenario(t)
			tc.load(s)
			if fs := s.leak(); len(fs) != 0 {
				t.Fatalf("got %d findings, want none: %s", len(fs), fs[0].Summary)
			}
		})
	}
}

func TestLeakDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b     string
		min, max float64
	}{
		{"DE", "AU", 14000, 16500},
		{"DE", "FR", 500, 1000},
		{"US", "BR", 6000, 8500},
		{"DE", "DE", 0, 0},
	} {
		km, ok := leakDistanceKM(tc.a, tc.b)
		if !ok || km < tc.min || km > tc.max {
			t.Errorf("%s–%s = %.0f km (%v), want %.0f to %.0f", tc.a, tc.b, km, ok, tc.min, tc.max)
		}
	}
	if _, ok := leakDistanceKM("DE", "ZZ"); ok {
		t.Error("an unknown country has a distance")
	}
	if len(leakCentroids) < 150 {
		t.Errorf("%d countries have centroids, want at least 150", len(leakCentroids))
	}
}
