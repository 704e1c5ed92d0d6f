package detect

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// daily returns a caller's events on key at hh:mm every day in [from, to).
func daily(key string, caller event, from, to time.Time, hh, mm int) []event {
	first := time.Date(from.Year(), from.Month(), from.Day(), hh, mm, 0, 0, time.UTC)
	if first.Before(from) {
		first = first.Add(24 * time.Hour)
	}
	return calls(key, caller, first, to, 24*time.Hour)
}

// byClient returns the findings of fs about key, by client.
func byClient(fs []finding.Finding, key string) map[string]finding.Finding {
	out := map[string]finding.Finding{}
	for _, f := range fs {
		if f.KeyID == key {
			out[f.ClientID] = f
		}
	}
	return out
}

// TestLingeringSubCallers: client api-svc moved to the new key on its two web hosts
// two days ago, while its nightly job on a third host (cron-sync/2.1) still calls the old key at
// 02:00. The client is not moved while one of its (IP, user agent) pairs still uses the old key:
// one finding about api-svc naming the job, and readiness unsafe. Look-alike: client billing, whose
// two hosts both moved, is released and its own key is safe to retire.
func TestLingeringSubCallers(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	started, deadline := now.Add(-72*time.Hour), now.Add(20*time.Hour)
	s.rotate("kid_api", "kid_api_new", "api-svc", started, deadline)
	s.rotate("kid_bill", "kid_bill_new", "billing", started, deadline)
	moved := now.Add(-48 * time.Hour)
	for i, host := range []string{"10.0.4.1", "10.0.4.2"} {
		web := event{ClientID: "api-svc", IP: host, UA: "api-svc/3.0"}
		s.events(calls("kid_api", web, now.Add(-10*24*time.Hour+time.Duration(i)*time.Minute), moved, 10*time.Minute))
		s.events(calls("kid_api_new", web, moved, now, 10*time.Minute))
		bill := event{ClientID: "billing", IP: "10.0.9." + fmt.Sprint(i+1), UA: "billing/1.2"}
		s.events(calls("kid_bill", bill, now.Add(-10*24*time.Hour), moved, 10*time.Minute))
		s.events(calls("kid_bill_new", bill, moved, now, 10*time.Minute))
	}
	job := event{ClientID: "api-svc", IP: "10.0.4.7", UA: "cron-sync/2.1"}
	s.events(daily("kid_api", job, now.Add(-10*24*time.Hour), now, 2, 0))

	fs := s.lingering(now)
	if f, ok := byClient(fs, "kid_bill")["billing"]; ok {
		t.Errorf("billing moved on both hosts two days ago: finding %q, want none", f.Summary)
	}
	f, ok := byClient(fs, "kid_api")["api-svc"]
	if !ok {
		t.Fatalf("no finding about api-svc, whose nightly job on 10.0.4.7 still calls kid_api (10h ago); findings %+v", fs)
	}
	if f.Severity != finding.Warning || f.Fingerprint != finding.Fingerprint("lingering", "kid_api", "api-svc", "kid_api>kid_api_new") {
		t.Errorf("finding %s %s, want a warning with the client's fingerprint", f.Severity, f.Fingerprint)
	}
	if !strings.Contains(f.Summary, "10.0.4.7 (cron-sync/2.1)") {
		t.Errorf("summary %q does not name the job still on the old key", f.Summary)
	}
	if len(fs) != 1 {
		t.Errorf("%d findings, want only api-svc's: %+v", len(fs), fs)
	}
	rep := s.readiness(now, "kid_api")
	if rep.Safe || len(rep.Remaining) != 1 || rep.Remaining[0].ClientID != "api-svc" {
		t.Errorf("readiness of kid_api %+v, want unsafe with api-svc remaining", rep)
	}
	c := rep.Remaining[0]
	if rep.Verdict != VerdictUnsafe || c.SubCallers != 1 || len(c.StillOn) != 1 {
		t.Fatalf("readiness %s, api-svc with %d pairs still on the key (%+v); want unsafe, only the job", rep.Verdict, c.SubCallers, c.StillOn)
	}
	if s := c.StillOn[0]; s.IP != "10.0.4.7" || s.UserAgent != "cron-sync/2.1" || s.Cadence != "about daily" ||
		s.QuietNeeded != "1d12h" || s.QuietSoFar != "10h" || s.SuccessorLastOK != nil {
		t.Errorf("the job still on kid_api: %+v, want 10.0.4.7 cron-sync/2.1, about daily, quiet 1d12h needed, 10h so far, never on the new key", s)
	}
	wantSummary := "; still on it: 10.0.4.7 (cron-sync/2.1), last 10h ago, runs about daily: quiet 1d12h needed"
	if !strings.HasSuffix(f.Summary, wantSummary) {
		t.Errorf("summary %q does not end %q", f.Summary, wantSummary)
	}

	// Look-alike: a mobile app's client calls from addresses that change all the time (each seen in
	// one hour); it moved to the new key two days ago, from other addresses. Its old addresses are
	// never seen on the new key, yet the client moved: it is released, and its key is safe.
	s.rotate("kid_app", "kid_app_new", "mobile", started, deadline)
	var app []event
	for i := range 300 {
		key, at := "kid_app", now.Add(-5*24*time.Hour+time.Duration(i)*20*time.Minute)
		if i >= 150 {
			key, at = "kid_app_new", now.Add(-48*time.Hour+time.Duration(i-150)*15*time.Minute)
		}
		app = append(app, event{TS: at, KeyID: key, ClientID: "mobile", IP: fmt.Sprintf("100.70.%d.%d", i/250, 1+i%250), UA: "shop-ios/5.2"})
	}
	s.events(app)
	if f, ok := byClient(s.lingering(now), "kid_app")["mobile"]; ok {
		t.Errorf("the mobile client moved two days ago from changing addresses: finding %q, want none", f.Summary)
	}
	if rep := s.readiness(now, "kid_app"); !rep.Safe {
		t.Errorf("readiness of kid_app %+v, want safe: the mobile client moved", rep)
	}

	// The same with a nightly job that runs in a new container each night, from a new address: its
	// user agent's rhythm over all its addresses says daily, and it never moved.
	s.rotate("kid_ord", "kid_ord_new", "orders", started, deadline)
	ordWeb := event{ClientID: "orders", IP: "10.0.2.1", UA: "orders-web/4.0"}
	s.events(calls("kid_ord", ordWeb, now.Add(-10*24*time.Hour), moved, 10*time.Minute))
	s.events(calls("kid_ord_new", ordWeb, moved, now, 10*time.Minute))
	var pods []event
	for i, at := range every(now.Add(-10*24*time.Hour), now, 24*time.Hour, func(time.Time) (event, bool) { return event{}, true }) {
		pods = append(pods, event{TS: at.TS.Add(14 * time.Hour), KeyID: "kid_ord", ClientID: "orders", IP: fmt.Sprintf("10.244.%d.7", i), UA: "ord-sync/1.0"})
	}
	s.events(pods)
	f, ok = byClient(s.lingering(now), "kid_ord")["orders"]
	if !ok || !strings.Contains(f.Summary, "2 of its addresses and user agents still on it, latest 10.244.9.7 (ord-sync/1.0), last 10h ago, runs about daily: quiet 1d12h needed") {
		t.Errorf("orders' nightly job in a new container each night: finding %q (found %v), want it named, daily", f.Summary, ok)
	}

	// A client calling from 2,000 addresses, all still on its old key: one finding that names the
	// latest few and counts them, its evidence bounded.
	s.rotate("kid_fleet", "kid_fleet_new", "fleet", started, deadline)
	var fleet []event
	for i := range 2000 {
		fleet = append(fleet, event{TS: now.Add(-100*time.Minute + time.Duration(i)*time.Second), KeyID: "kid_fleet", ClientID: "fleet",
			IP: fmt.Sprintf("100.64.%d.%d", i/250, 1+i%250), UA: "fleet-agent/9"})
	}
	s.events(fleet)
	f, ok = byClient(s.lingering(now), "kid_fleet")["fleet"]
	if !ok {
		t.Fatal("no finding about fleet")
	}
	ev := callerEvidence(t, f)
	if ev.Caller.SubCallers != 2000 || len(ev.Caller.StillOn) != maxListedSubCallers || ev.Caller.StillOn[0].IP != "100.64.7.250" {
		t.Errorf("fleet: %d pairs, listing %+v; want 2000 counted, the latest %d listed", ev.Caller.SubCallers, ev.Caller.StillOn, maxListedSubCallers)
	}
	if b, _ := json.Marshal(ev); len(b) > 3000 {
		t.Errorf("evidence is %d bytes of JSON, want it bounded: %s", len(b), b)
	}
	if !strings.Contains(f.Summary, "2000 of its addresses and user agents still on it, latest 100.64.7.250 (fleet-agent/9)") {
		t.Errorf("summary %q does not count the pairs", f.Summary)
	}
	if rep := s.readiness(now, "kid_bill"); !rep.Safe {
		t.Errorf("readiness of kid_bill %+v, want safe: both of billing's hosts moved", rep)
	}
}

// TestLingeringCadence: quiet is judged against each caller's own rhythm. A daily
// report job runs at 02:00 with the old key for one step and at 02:05 with the new one; ten hours
// after its run it has been seen on the new key since and quiet on the old one far longer than
// quiet_for, yet it will call the old key again tonight: it remains. A daily exporter that never
// moved remains five hours after its run. Look-alikes: an hourly service that moved a day ago, and
// a nightly job that ran tonight with the new key only, are released.
func TestLingeringCadence(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	started, deadline := now.Add(-72*time.Hour), now.Add(20*time.Hour)
	s.rotate("kid_old", "kid_new", "acme", started, deadline)
	from := now.Add(-20 * 24 * time.Hour)
	reports := event{ClientID: "reports", IP: "10.0.5.5", UA: "report-job/1.4"}
	s.events(daily("kid_old", reports, from, now, 2, 0))
	s.events(daily("kid_old", reports, from, started, 2, 5))
	s.events(daily("kid_new", reports, started, now, 2, 5))
	exporter := event{ClientID: "exporter", IP: "10.0.6.6", UA: "exporter/2.0"}
	s.events(daily("kid_old", exporter, from, now, 7, 0))
	// Look-alike: a nightly job that moved: last night it ran with the old key, tonight at 03:00
	// with the new one only. Quiet 33h on the old key, under a daily job's 36h, but it ran since
	// without it.
	nightly := event{ClientID: "nightly", IP: "10.0.5.9", UA: "nightly/2.0"}
	s.events(daily("kid_old", nightly, from, now.Add(-10*time.Hour), 3, 0))
	s.events(daily("kid_new", nightly, now.Add(-10*time.Hour), now, 3, 0))
	hourly := event{ClientID: "hourly-svc", IP: "10.0.7.7", UA: "svc/5.1"}
	s.events(calls("kid_old", hourly, from, now.Add(-24*time.Hour), time.Hour))
	s.events(calls("kid_new", hourly, now.Add(-24*time.Hour), now, time.Hour))

	found := byClient(s.lingering(now), "kid_old")
	if f, ok := found["nightly"]; ok {
		t.Errorf("the nightly job ran tonight with the new key only: finding %q, want none", f.Summary)
	}
	if f, ok := found["hourly-svc"]; ok {
		t.Errorf("the hourly service moved a day ago: finding %q, want none", f.Summary)
	}
	if _, ok := found["exporter"]; !ok {
		t.Errorf("no finding about the daily exporter still on the old key, 5h after its run")
	}
	if _, ok := found["reports"]; !ok {
		t.Errorf("no finding about the daily report job that called the old key 10h ago and will again tonight")
	}
	rep := s.readiness(now, "kid_old")
	if rep.Safe || len(rep.Remaining) != 2 {
		t.Errorf("readiness %+v, want unsafe with reports and exporter remaining", rep)
	}
	for _, c := range rep.Remaining {
		want := map[string]string{"reports": "about daily", "exporter": "about daily"}[c.ClientID]
		if len(c.StillOn) != 1 || c.StillOn[0].Cadence != want || c.StillOn[0].QuietNeeded != "1d12h" {
			t.Errorf("%s still on the key: %+v, want one pair that runs %s, quiet 1d12h needed", c.ClientID, c.StillOn, want)
		}
	}
	if c := rep.Remaining[0]; c.ClientID != "exporter" || c.StillOn[0].SuccessorLastOK != nil {
		t.Errorf("the latest remaining %+v, want exporter, never on the new key", c)
	}
	if c := rep.Remaining[1]; c.ClientID != "reports" || c.StillOn[0].SuccessorLastOK == nil {
		t.Errorf("the second remaining %+v, want reports, seen on the new key since", c)
	}
	// A day and a half of quiet later, the daily jobs count as gone from the key.
	if rep := s.readiness(now.Add(40*time.Hour), "kid_old"); !rep.Safe {
		t.Errorf("40h later, with no call since: readiness %+v, want safe", rep)
	}
}

// TestLingeringSuccessorChain: after A → B and B → C, service orders went from A
// straight to C two days ago: it moved off A, which is safe to retire and gives no finding.
// Look-alike: in a second chain of the same shape, service legacy still calls the first key.
func TestLingeringSuccessorChain(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	for _, chain := range []string{"one", "two"} {
		a, b, c := "kid_"+chain+"_a", "kid_"+chain+"_b", "kid_"+chain+"_c"
		s.rotate(a, b, "shop", now.Add(-5*24*time.Hour), now.Add(20*time.Hour))
		s.lifecycle(rotation.Event{TS: now.Add(-3 * 24 * time.Hour), Type: rotation.KeyRotationStarted, KeyID: b, ClientID: "shop",
			NewKeyID: c, GraceUntil: now.Add(6 * 24 * time.Hour)})
	}
	orders := event{ClientID: "orders", IP: "10.0.8.8", UA: "orders/7.0"}
	s.events(calls("kid_one_a", orders, now.Add(-10*24*time.Hour), now.Add(-48*time.Hour), 15*time.Minute))
	s.events(calls("kid_one_c", orders, now.Add(-48*time.Hour), now, 15*time.Minute))
	legacy := event{ClientID: "legacy", IP: "10.0.8.9", UA: "legacy/0.3"}
	s.events(calls("kid_two_a", legacy, now.Add(-10*24*time.Hour), now, 15*time.Minute))

	fs := s.lingering(now)
	if f, ok := byClient(fs, "kid_one_a")["orders"]; ok {
		t.Errorf("orders moved from kid_one_a to kid_one_c two days ago: finding %q, want none", f.Summary)
	}
	if _, ok := byClient(fs, "kid_two_a")["legacy"]; !ok {
		t.Errorf("no finding about legacy, still on kid_two_a: %+v", fs)
	}
	if len(fs) != 1 {
		t.Errorf("%d findings, want only legacy's: %+v", len(fs), fs)
	}
	if rep := s.readiness(now, "kid_one_a"); !rep.Safe {
		t.Errorf("readiness of kid_one_a %+v, want safe: its one caller is on kid_one_c", rep)
	}
	if rep := s.readiness(now, "kid_two_a"); rep.Safe || len(rep.Remaining) != 1 || rep.Remaining[0].ClientID != "legacy" {
		t.Errorf("readiness of kid_two_a %+v, want unsafe with legacy remaining", rep)
	}
}

// TestLingeringRefusedOnly: refused attempts are not use. A key retired thirty days
// ago whose only traffic since is a cron refused every hour is gone, not unsafe; 300 addresses
// trying a revoked key without a client, all refused, give no lingering finding (the leak detector
// tells that story), nor does a client refused on it. Look-alike: one successful call without a
// client on another revoked key is use after revocation, one critical finding.
func TestLingeringRefusedOnly(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	retired := now.Add(-30 * 24 * time.Hour)
	s.rotate("kid_ret", "kid_ret_new", "acme", retired.Add(-3*24*time.Hour), retired)
	s.lifecycle(rotation.Event{TS: retired, Type: rotation.KeyRetired, KeyID: "kid_ret", ClientID: "acme"})
	s.events(calls("kid_ret", event{ClientID: "acme"}, retired.Add(-5*24*time.Hour), retired, time.Hour))
	s.events(calls("kid_ret", event{ClientID: "old-cron", IP: "10.0.3.3", UA: "cron/1", Outcome: "invalid_key"}, now.Add(-3*24*time.Hour), now, time.Hour))

	revoked := now.Add(-2 * 24 * time.Hour)
	for _, k := range []string{"kid_rev", "kid_rev2"} {
		s.rotate(k, k+"_new", "acme", revoked.Add(-3*24*time.Hour), revoked)
		s.lifecycle(rotation.Event{TS: revoked, Type: rotation.KeyRevoked, KeyID: k, ClientID: "acme", Reason: "suspected leak"})
		s.events(calls(k, event{ClientID: "acme"}, revoked.Add(-5*24*time.Hour), revoked, 10*time.Minute))
	}
	var probes []event
	for i := range 300 {
		probes = append(probes, event{TS: now.Add(-50*time.Minute + time.Duration(i)*5*time.Second), KeyID: "kid_rev", Outcome: "revoked_key",
			IP: fmt.Sprintf("45.134.%d.%d", 140+i/250, 1+i%250), UA: "python-requests/2.31"})
	}
	s.events(probes)
	s.events(calls("kid_rev", event{ClientID: "partner", Outcome: "revoked_key"}, revoked, now, time.Hour))
	s.events([]event{{TS: now.Add(-20 * time.Minute), KeyID: "kid_rev2", IP: "203.0.113.9", UA: "curl/8.4"}})

	fs := s.lingering(now)
	if got := byClient(fs, "kid_rev"); len(got) != 0 {
		t.Errorf("kid_rev: %d findings (%v), want none: every attempt since the revocation was refused", len(got), got)
	}
	f, ok := byClient(fs, "kid_rev2")[""]
	if !ok || f.Severity != finding.Critical {
		t.Errorf("kid_rev2: %+v, want one critical finding about the successful call after revocation", fs)
	}
	if len(fs) != 1 {
		t.Errorf("%d findings, want 1: %+v", len(fs), fs)
	}
	rep := s.readiness(now, "kid_ret")
	if !rep.Safe || len(rep.Remaining) != 0 {
		t.Errorf("readiness of kid_ret %+v, want safe (gone) with nothing remaining", rep)
	}
	if rep.Verdict != VerdictGone || len(rep.Refused) != 1 || rep.Refused[0].ClientID != "old-cron" ||
		rep.Reason != "kid_ret was retired 30d ago and nothing succeeded with it since; 72 attempts from old-cron, last 1h ago, were all refused (not use)" {
		t.Errorf("readiness of kid_ret: %s %q, refused %+v; want gone, old-cron's 72 refused attempts listed", rep.Verdict, rep.Reason, rep.Refused)
	}
	var out strings.Builder
	WriteReadiness(&out, rep)
	if !strings.HasPrefix(out.String(), "GONE: kid_ret (retired) ") || !strings.Contains(out.String(), "old-cron") {
		t.Errorf("printed:\n%s\nwant it to start GONE and list old-cron as refused", out.String())
	}
	if rep := s.readiness(now, "kid_rev"); !rep.Safe || rep.Verdict != VerdictGone || len(rep.Refused) != maxListedRefused || rep.RefusedUnlisted != 301-maxListedRefused {
		t.Errorf("readiness of kid_rev %s, %d refused listed, %d unlisted; want gone, %d listed, %d unlisted",
			rep.Verdict, len(rep.Refused), rep.RefusedUnlisted, maxListedRefused, 301-maxListedRefused)
	}
	// A key a gateway still accepted after its retirement, until a caller stopped ten hours ago: no
	// caller depends on it, but something did succeed with it since, so it is safe, not gone.
	s.rotate("kid_ret2", "kid_ret2_new", "acme", revoked.Add(-3*24*time.Hour), revoked)
	s.lifecycle(rotation.Event{TS: revoked, Type: rotation.KeyRetired, KeyID: "kid_ret2", ClientID: "acme"})
	s.events(calls("kid_ret2", event{ClientID: "late", IP: "10.0.3.4", UA: "late/1"}, revoked.Add(-24*time.Hour), now.Add(-10*time.Hour), time.Hour))
	if rep := s.readiness(now, "kid_ret2"); !rep.Safe || rep.Verdict != VerdictSafe {
		t.Errorf("readiness of kid_ret2 %s %q, want safe (not gone: late succeeded with it after the retirement)", rep.Verdict, rep.Reason)
	}
	if rep := s.readiness(now, "kid_rev2"); rep.Safe {
		t.Errorf("readiness of kid_rev2 %+v, want unsafe: a caller succeeded after revocation", rep)
	}
}
