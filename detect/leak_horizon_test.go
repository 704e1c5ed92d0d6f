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

// leakUses is one event per interval in [from, to) from ips in turn, of one network, country and
// user agent.
func leakUses(key, client string, from, to time.Time, interval time.Duration, ips []string, asn uint32, org, country, ua string) []event {
	i := 0
	return every(from, to, interval, func(time.Time) (event, bool) {
		i++
		return event{KeyID: key, ClientID: client, IP: ips[i%len(ips)], ASN: asn, ASOrg: org, Country: country, UA: ua}, true
	})
}

// leakSummaries lists the findings' summaries, for failure messages.
func leakSummaries(fs []finding.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Summary)
	}
	return out
}

// A leak that no single hour shows: a key used for 8 days from its network in DE is used from a
// network in BR it never used, 3 requests an hour for the last 20 hours. No hour carries
// min_requests (10), yet the place is new (first seen within new_for, 48 h) and has persisted: 60
// requests over 20 hours. New network + new country = 70, a warning. Beside it, keys that stay
// quiet: a new office network in a new country used steadily for 3 days (older than new_for: it is
// baseline), the new key of a rotation in its overlap (it inherits the networks of the key it
// replaces), and a mobile key whose users keep bringing networks and countries it never saw (new
// places are routine for it, so persistence does not carry one).
func TestLeakSlowLeakCarriedByPersistence(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	start := now.Add(-8 * 24 * time.Hour)
	home := []string{"198.51.100.10", "198.51.100.11"}

	evs := leakUses("kid_slow", "acme-billing", start, now, time.Minute, home, 64500, "Example Net", "DE", "acme-sdk/2.1")
	evs = append(evs, leakUses("kid_slow", "acme-billing", now.Add(-20*time.Hour), now, 20*time.Minute, []string{"203.0.113.66"},
		64666, "Bulletproof Hosting", "BR", "python-requests/2.31")...)

	evs = append(evs, leakUses("kid_office", "initech", start, now, time.Minute, home, 64500, "Example Net", "DE", "initech/1.0")...)
	evs = append(evs, leakUses("kid_office", "initech", now.Add(-3*24*time.Hour), now, 5*time.Minute, []string{"192.0.2.40"},
		64530, "Office Net", "NL", "initech/1.0")...)

	started := now.Add(-30 * time.Hour)
	s.lifecycle(
		rotation.Event{TS: start.Add(-time.Hour), Type: rotation.KeyCreated, KeyID: "kid_web_old", ClientID: "acme-web"},
		rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: "kid_web_old", ClientID: "acme-web", NewKeyID: "kid_web_new", GraceUntil: now.Add(5 * 24 * time.Hour)},
	)
	evs = append(evs, leakUses("kid_web_old", "acme-web", start, started, time.Minute, []string{"198.51.100.20"}, 64520, "Site One", "DE", "acme-web/3")...)
	evs = append(evs, leakUses("kid_web_old", "acme-web", start, now.Add(-10*time.Hour), time.Minute, []string{"192.0.2.30"}, 64521, "Site Two", "FR", "acme-web/3")...)
	evs = append(evs, leakUses("kid_web_new", "acme-web", started, now, time.Minute, []string{"198.51.100.20"}, 64520, "Site One", "DE", "acme-web/3")...)
	evs = append(evs, leakUses("kid_web_new", "acme-web", now.Add(-12*time.Hour), now, 20*time.Minute, []string{"192.0.2.30"}, 64521, "Site Two", "FR", "acme-web/3")...)

	// The mobile key: a steady base in DE, and every 12 hours a roaming user from a network and
	// country it never saw, 3 requests an hour for a day.
	evs = append(evs, leakUses("kid_mobile", "acme-app", start, now, 30*time.Second, []string{"10.0.0.1", "10.0.1.1", "10.0.2.1"}, 64510, "Mobile One", "DE", "acme-ios/5.2")...)
	roaming := []string{"FR", "ES", "IT", "PT", "NL", "BE", "AT", "PL", "CZ", "SE", "DK", "NO", "FI", "IE", "GR", "HU"}
	for i, cc := range roaming {
		from := start.Add(time.Duration(i) * 12 * time.Hour)
		to := from.Add(24 * time.Hour)
		if to.After(now) {
			to = now
		}
		evs = append(evs, leakUses("kid_mobile", "acme-app", from, to, 20*time.Minute,
			[]string{fmt.Sprintf("100.64.%d.7", i)}, 65000+uint32(i), "Roaming "+cc, cc, "acme-ios/5.2")...)
	}
	s.events(evs)

	fs := s.leak()
	if len(fs) != 1 || fs[0].KeyID != "kid_slow" {
		t.Fatalf("findings %q, want one about kid_slow", leakSummaries(fs))
	}
	f := fs[0]
	ev := leakEvidence(t, f)
	if f.Severity != finding.Warning || f.Score != 70 || !slices.Equal(leakKinds(ev), []string{leakSignalNewNetwork, leakSignalNewCountry}) {
		t.Fatalf("%s score %g signals %v, want a warning of 70 from new network and new country", f.Severity, f.Score, leakKinds(ev))
	}
	net := leakSignalOf(t, ev, leakSignalNewNetwork).Places
	if len(net) != 1 || net[0].Network != "AS64666" || net[0].Requests != 60 || !net[0].FirstSeen.Equal(now.Add(-20*time.Hour)) ||
		net[0].HoursActive != 20 {
		t.Fatalf("new network %+v, want AS64666 first seen 20 h ago, 60 requests over 20 hours", net)
	}
	if len(ev.Baseline.Countries) != 1 || ev.Baseline.Countries[0] != "DE" {
		t.Errorf("baseline countries %v, want DE only", ev.Baseline.Countries)
	}
}

// A personal key (one user agent, residential networks in DE and, on an earlier stay, the US; one
// place at a time) is used from DE until 30 minutes ago and from the US 10 minutes later: both
// countries are familiar, yet the key cannot make the hop, and impossible travel alone is a warning.
// A multi-region service key that has always run in DE and the US in the same hours fails over
// from DE to the US the same way: silent. So does a personal key behind a VPN that switches it
// between DE and the US within the hour every day of its history.
func TestLeakTravelAgainstOwnHistory(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	start := now.Add(-8 * 24 * time.Hour)
	usStay := start.Add(3 * 24 * time.Hour)
	evs := leakUses("kid_personal", "", start, usStay, 2*time.Minute, []string{"73.12.4.9"}, 7922, "Comcast", "US", "httpie/3.2")
	evs = append(evs, leakUses("kid_personal", "", usStay.Add(14*time.Hour), now.Add(-30*time.Minute), 2*time.Minute, []string{"91.64.3.2"},
		3320, "Deutsche Telekom", "DE", "httpie/3.2")...)
	evs = append(evs, leakUses("kid_personal", "", now.Add(-10*time.Minute), now, time.Minute, []string{"73.12.4.9"}, 7922, "Comcast", "US", "httpie/3.2")...)

	evs = append(evs, leakUses("kid_multi", "globex", start, now.Add(-30*time.Minute), time.Minute, []string{"198.51.100.30"}, 16509, "Amazon", "DE", "globex-svc/4.0")...)
	evs = append(evs, leakUses("kid_multi", "globex", start, now.Add(-2*time.Hour), time.Minute, []string{"192.0.2.31"}, 16509, "Amazon", "US", "globex-svc/4.0")...)
	evs = append(evs, leakUses("kid_multi", "globex", now.Add(-10*time.Minute), now, 20*time.Second, []string{"192.0.2.31"}, 16509, "Amazon", "US", "globex-svc/4.0")...)
	for day := start; day.Before(now.Add(-24 * time.Hour)); day = day.Add(24 * time.Hour) {
		evs = append(evs, leakUses("kid_vpn", "", day.Add(8*time.Hour), day.Add(10*time.Hour), 2*time.Minute, []string{"91.64.3.3"}, 3320, "Deutsche Telekom", "DE", "httpie/3.2")...)
		evs = append(evs, leakUses("kid_vpn", "", day.Add(10*time.Hour+10*time.Minute), day.Add(12*time.Hour), 2*time.Minute, []string{"45.87.1.2"}, 9009, "M247", "US", "httpie/3.2")...)
	}
	evs = append(evs, leakUses("kid_vpn", "", now.Add(-2*time.Hour), now.Add(-30*time.Minute), 2*time.Minute, []string{"91.64.3.3"}, 3320, "Deutsche Telekom", "DE", "httpie/3.2")...)
	evs = append(evs, leakUses("kid_vpn", "", now.Add(-10*time.Minute), now, time.Minute, []string{"45.87.1.2"}, 9009, "M247", "US", "httpie/3.2")...)
	s.events(evs)

	fs := s.leak()
	if len(fs) != 1 || fs[0].KeyID != "kid_personal" {
		t.Fatalf("findings %q, want one about kid_personal", leakSummaries(fs))
	}
	f := fs[0]
	ev := leakEvidence(t, f)
	if f.Severity != finding.Warning || f.Score != 60 || !slices.Equal(leakKinds(ev), []string{leakSignalImpossibleTravel}) {
		t.Fatalf("%s score %g signals %v, want a warning of 60 from impossible travel alone", f.Severity, f.Score, leakKinds(ev))
	}
	trips := leakSignalOf(t, ev, leakSignalImpossibleTravel).Travel
	if len(trips) != 1 || trips[0].From != "DE" || trips[0].To != "US" || trips[0].GapMinutes != 22 ||
		!trips[0].FromSeen.Equal(now.Add(-32*time.Minute)) || !trips[0].ToSeen.Equal(now.Add(-10*time.Minute)) {
		t.Fatalf("travel %+v, want DE (last %s) → US (first %s)", trips, now.Add(-32*time.Minute), now.Add(-10*time.Minute))
	}
	if h := leakSignalOf(t, ev, leakSignalImpossibleTravel).History; !trips[0].Familiar || h == nil || !h.OnePlace || h.HoursTwoCountries != 0 ||
		h.UserAgentFamilies != 1 || h.Networks != 2 || h.Hours < 24 || len(h.Switches) != 0 {
		t.Errorf("history %+v (familiar %v), want one place at a time: one user-agent family, two networks, no two countries at once", h, trips[0].Familiar)
	}
}

// Events of hour H that arrive after the IPHours job ran at H+1h+1m are in the fan-out baseline
// the detector reads: the job does not finalize an hour until allowed_lateness (10 min) after its
// end, and later runs finalize again the recent hours whose count changed. A key whose events all
// arrived in time keeps one row per hour, however often the job runs.
func TestIPHoursAllowedLateness(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	ctx := context.Background()
	h := now.Add(-3 * time.Hour) // 09:00
	ips := func(first, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("198.51.100.%d", first+i))
		}
		return out
	}
	var evs []event
	for hour := h.Add(-3 * time.Hour); hour.Before(now); hour = hour.Add(time.Hour) {
		evs = append(evs, leakUses("kid_late", "acme", hour, hour.Add(30*time.Minute), time.Minute, ips(1, 5), 64500, "Example Net", "DE", "sdk/1")...)
		evs = append(evs, leakUses("kid_ontime", "acme", hour, hour.Add(30*time.Minute), time.Minute, ips(1, 4), 64500, "Example Net", "DE", "sdk/1")...)
	}
	s.events(evs)
	job := NewIPHours(s.conn, s.cfg.Leak)
	d := NewLeak(s.conn, s.cfg.Leak)
	baselineAt := func(at time.Time, key string) []float64 {
		t.Helper()
		base, err := d.ipBaselines(ctx, []string{"kid_late", "kid_ontime"}, now.Add(-24*time.Hour), at.Truncate(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return base[key][h.Hour()]
	}

	if err := job.Run(ctx, h.Add(time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Three minutes late: 5 more addresses in hour H.
	s.events(leakUses("kid_late", "acme", h.Add(50*time.Minute), h.Add(55*time.Minute), time.Minute, ips(10, 5), 64500, "Example Net", "DE", "sdk/1"))
	if got := baselineAt(h.Add(time.Hour+5*time.Minute), "kid_late"); !slices.Equal(got, []float64{10}) {
		t.Fatalf("baseline of hour %s at %s = %v, want [10] (the late events included)", h.Format("15:04"), h.Add(time.Hour+5*time.Minute).Format("15:04"), got)
	}

	if err := job.Run(ctx, h.Add(2*time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Two and a half hours late, after the hour was finalized: 3 more.
	s.events(leakUses("kid_late", "acme", h.Add(56*time.Minute), h.Add(59*time.Minute), time.Minute, ips(20, 3), 64500, "Example Net", "DE", "sdk/1"))
	if err := job.Run(ctx, h.Add(3*time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := baselineAt(now, "kid_late"); !slices.Equal(got, []float64{13}) {
		t.Fatalf("baseline of hour %s after the job ran again = %v, want [13]", h.Format("15:04"), got)
	}
	if got := baselineAt(now, "kid_ontime"); !slices.Equal(got, []float64{4}) {
		t.Errorf("kid_ontime's baseline of hour %s = %v, want [4]", h.Format("15:04"), got)
	}
	var rows, hours uint64
	if err := s.conn.QueryRow(ctx, "SELECT count(), uniqExact(hour) FROM key_ip_hours WHERE key_id = 'kid_ontime'").Scan(&rows, &hours); err != nil {
		t.Fatal(err)
	}
	if rows != hours || rows == 0 {
		t.Errorf("kid_ontime: %d rows in key_ip_hours for %d hours, want one each", rows, hours)
	}
}
