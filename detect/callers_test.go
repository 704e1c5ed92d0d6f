package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// runOnce runs the named detectors once through an engine without a store, as `keywatch detect
// --once` does, and returns each one's findings.
func (s *scenario) runOnce(names ...string) map[string][]finding.Finding {
	s.t.Helper()
	var ds []Scheduled
	for _, sc := range All(s.conn, s.cfg) {
		ds = append(ds, Scheduled{Detector: sc.Detector})
	}
	runs, err := NewEngine(ds, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil))).RunOnce(context.Background(), now, names...)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string][]finding.Finding{}
	for _, r := range runs {
		out[r.Detector] = r.Findings
	}
	return out
}

// TestLingeringUnidentifiedCallers: two days after kid_old was revoked, 5,000 requests on it that
// a gateway still accepts (the revocation did not reach it) come from callers the gateway resolved
// no client for, each with its own user agent, over 250 addresses: identities the caller chooses.
// One run reports them in one finding that says how many they were, beside the finding of the
// identified client that still calls.
func TestLingeringUnidentifiedCallers(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	revoked := now.Add(-2 * 24 * time.Hour)
	s.rotate("kid_old", "kid_new", "acme", revoked.Add(-3*24*time.Hour), revoked)
	s.lifecycle(rotation.Event{TS: revoked, Type: rotation.KeyRevoked, KeyID: "kid_old", ClientID: "acme", Reason: "suspected leak"})
	s.events(calls("kid_old", event{ClientID: "late"}, revoked, now, time.Hour))
	const probes = 5000
	evs := make([]event, probes)
	for i := range evs {
		evs[i] = event{TS: now.Add(-50*time.Minute + time.Duration(i)*500*time.Millisecond), KeyID: "kid_old",
			IP: fmt.Sprintf("45.134.140.%d", 1+i%250), UA: fmt.Sprintf("probe/%d", i)}
	}
	// The rollup keeps times to the second: the last probe alone in its second is the latest.
	evs[probes-1].TS = evs[probes-1].TS.Add(500 * time.Millisecond)
	s.events(evs)

	fs := s.runOnce("lingering")["lingering"]
	if len(fs) != 2 {
		t.Fatalf("%d findings in one run, want 2 (the client late, the callers without a client); the first: %s", len(fs), fs[0].Summary)
	}
	byClient := map[string]finding.Finding{}
	for _, f := range fs {
		byClient[f.ClientID] = f
	}
	if f, ok := byClient["late"]; !ok || !strings.HasPrefix(f.Summary, "late still calls kid_old, revoked 2d ago") {
		t.Errorf("the identified client's finding: %+v, want its own", f)
	}
	f, ok := byClient[""]
	if !ok {
		t.Fatalf("no finding about the callers without a client: %+v", fs)
	}
	if f.Severity != finding.Critical || f.Score < 100 || f.RotationID != "kid_old>kid_new" ||
		f.Fingerprint != finding.Fingerprint("lingering", "kid_old", "(unidentified callers)", "kid_old>kid_new") {
		t.Errorf("finding %s score %g rotation %s fingerprint %s; want critical, score >= 100, kid_old>kid_new and the unidentified callers' fingerprint",
			f.Severity, f.Score, f.RotationID, f.Fingerprint)
	}
	want := "5000 callers without a client (250 addresses, 5000 user agents) still call kid_old, revoked 2d ago " +
		"(5000 requests since then, last 8m ago; 0% of their traffic is on kid_new)"
	if f.Summary != want {
		t.Errorf("summary\n got %q\nwant %q", f.Summary, want)
	}
	ev := callerEvidence(t, f)
	if ev.Callers != probes || ev.Addresses != 250 || ev.UserAgents != probes || ev.Step != "revoked" {
		t.Errorf("evidence counts %d callers, %d addresses, %d user agents, step %s; want %d, 250, %d, revoked",
			ev.Callers, ev.Addresses, ev.UserAgents, ev.Step, probes, probes)
	}
	c := ev.Caller
	if c.ClientID != "" || c.IP != "" || c.UserAgent != "" || c.Requests != probes || c.Failures != 0 ||
		!c.FirstSeen.Equal(now.Add(-50*time.Minute)) || c.LastSeen.Before(now.Add(-9*time.Minute)) || c.LastSeen.After(now.Add(-8*time.Minute)) {
		t.Errorf("the callers' sum %+v: want no client, IP nor user agent, %d requests all accepted, first seen 50m ago, last 8m ago", c, probes)
	}
	wantIPs := []Count{{"45.134.140.1", 20}, {"45.134.140.10", 20}, {"45.134.140.100", 20}, {"45.134.140.101", 20}, {"45.134.140.102", 20}}
	wantUAs := []Count{{"probe/0", 1}, {"probe/1", 1}, {"probe/10", 1}, {"probe/100", 1}, {"probe/1000", 1}}
	if !reflect.DeepEqual(c.TopIPs, wantIPs) || !reflect.DeepEqual(c.TopUserAgents, wantUAs) {
		t.Errorf("top addresses %v, user agents %v; want %v, %v", c.TopIPs, c.TopUserAgents, wantIPs, wantUAs)
	}
	// The bound is on the finding's identity, summary and evidence; its display fields are bounded apart.
	bare := f
	bare.Fields = nil
	if b, _ := json.Marshal(bare); len(b) > 2000 {
		t.Errorf("the finding is %d bytes of JSON, want it bounded whatever the number of callers: %s", len(b), b)
	}
	if b, _ := json.Marshal(f.Fields); len(b) > 1000 {
		t.Errorf("the finding's fields are %d bytes of JSON, want them bounded whatever the number of callers: %s", len(b), b)
	}

	// Readiness counts every caller, lists a bounded number, and keeps the client among them
	// although all 5,000 others called since.
	rep := s.readiness(now, "kid_old")
	if rep.Safe || len(rep.Remaining) != maxListedCallers || rep.Unlisted != probes+1-maxListedCallers {
		t.Errorf("readiness safe=%v with %d listed, %d unlisted; want unsafe, %d listed, %d unlisted",
			rep.Safe, len(rep.Remaining), rep.Unlisted, maxListedCallers, probes+1-maxListedCallers)
	}
	if !slices.ContainsFunc(rep.Remaining, func(c Caller) bool { return c.ClientID == "late" }) {
		t.Errorf("the client late is not among the listed callers")
	}
	if want := "kid_old was revoked 2d ago but is still used by 5001 callers (latest 45.134.140.250 (probe/4999), 8m ago)"; rep.Reason != want {
		t.Errorf("reason\n got %q\nwant %q", rep.Reason, want)
	}
}

func callerEvidence(t *testing.T, f finding.Finding) LingeringEvidence {
	t.Helper()
	ev, ok := f.Evidence.(LingeringEvidence)
	if !ok {
		t.Fatalf("evidence is %T, want LingeringEvidence", f.Evidence)
	}
	checkFields(t, f, ev.fields())
	return ev
}

// TestLingeringRevokedKeyProbed: the scenario of a leaked key, revoked after its client moved,
// then tried from 72 addresses of a network it never used, with no client resolved, every attempt
// refused: the leak detector tells the story in one finding; the lingering detector adds none,
// since nothing depends on the key (readiness answers that it is gone and lists the attempts).
func TestLingeringRevokedKeyProbed(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	revoked := now.Add(-2 * 24 * time.Hour)
	s.rotate("kid_gone", "kid_gone_new", "globex-billing", now.Add(-5*24*time.Hour), revoked)
	s.lifecycle(rotation.Event{TS: revoked, Type: rotation.KeyRevoked, KeyID: "kid_gone", ClientID: "globex-billing", Reason: "suspected leak"})
	evs := leakSteady("kid_gone", "globex-billing", now.Add(-8*24*time.Hour), now.Add(-3*24*time.Hour), time.Minute, leakUsualIPs, 64500, "Example Net", "DE")
	evs = append(evs, leakSteady("kid_gone_new", "globex-billing", now.Add(-3*24*time.Hour), now, 5*time.Minute, leakUsualIPs, 64500, "Example Net", "DE")...)
	for i := range 72 {
		for j := range 2 {
			evs = append(evs, event{TS: now.Add(-40*time.Minute + time.Duration(2*i+j)*10*time.Second), KeyID: "kid_gone", Outcome: "revoked_key",
				IP: fmt.Sprintf("45.134.140.%d", 1+i), UA: "python-requests/2.31", ASN: 64666, ASOrg: "Bulletproof Hosting", Country: "NL"})
		}
	}
	s.events(evs)

	found := s.runOnce("lingering", "leak")
	if n := len(found["leak"]); n != 1 {
		t.Errorf("%d leak findings, want 1: %+v", n, found["leak"])
	}
	if fs := found["lingering"]; len(fs) != 0 {
		t.Errorf("%d lingering findings, want none: every attempt on the revoked key was refused; the first: %s", len(fs), fs[0].Summary)
	}
	rep := s.readiness(now, "kid_gone")
	if rep.Verdict != VerdictGone || !rep.Safe || len(rep.Refused) != maxListedRefused || rep.RefusedUnlisted != 72-maxListedRefused ||
		!strings.Contains(rep.Reason, "; 144 attempts from 72 callers (latest 45.134.140.72 (python-requests/2.31)), last ") {
		t.Errorf("readiness %s safe=%v %q with %d refused listed, %d unlisted; want gone, the 72 refused callers counted",
			rep.Verdict, rep.Safe, rep.Reason, len(rep.Refused), rep.RefusedUnlisted)
	}
}
