package detect

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// The judgement of the lingering, spike and hygiene detectors from hand-built facts, without a
// database: what their reads would have returned, and the findings made of it.

// TestSpikeJudge: a client whose failures jump after its old key is retired fires, with the step
// as a label; the same counts against a baseline as bad do not.
func TestSpikeJudge(t *testing.T) {
	d := NewSpike(nil, config.Default().Detect.Spike)
	rot := &rotation.Rotation{ID: "kid_old>kid_new", OldKeyID: "kid_old", NewKeyID: "kid_new", ClientID: "acme"}
	step := rotation.Step{Kind: rotation.StepRetired, At: now.Add(-20 * time.Minute)}
	c := &spikeCase{rot: rot, step: step, client: "acme", stepMinute: step.At, shortFrom: now.Add(-5 * time.Minute), longFrom: step.At,
		base:     spikeTally{requests: 10000, failures: 10},
		shortWin: spikeTally{requests: 200, failures: 150}, longWin: spikeTally{requests: 800, failures: 500},
		byOutcome: map[string]uint64{"revoked_key": 480, "invalid_key": 20}, byKey: map[string]uint64{"kid_old": 500}}
	if !d.fires(c) {
		t.Fatal("a jump from 0.1% to 62% of 800 requests does not fire")
	}
	f := d.finding(c, []SpikeCount{{Name: "GET /v1/prices", Failures: 400}}, now)
	if f.Severity != finding.Critical || f.KeyID != "kid_old" || f.ClientID != "acme" || f.RotationID != rot.ID ||
		f.Labels[finding.LabelStep] != "retired" || !strings.Contains(f.Summary, "kid_old was retired") {
		t.Fatalf("finding %+v: want critical about acme on kid_old, labelled step=retired", f)
	}
	ev := f.Evidence.(SpikeEvidence)
	checkFields(t, f, ev.fields())
	if f.Fields[0] != (finding.Field{Name: "Rotation", Value: "kid_old → kid_new, retired 2026-11-20 11:40 UTC"}) {
		t.Errorf("first field %+v", f.Fields[0])
	}
	bad := *c
	bad.base = spikeTally{requests: 10000, failures: 6500}
	if d.fires(&bad) {
		t.Error("the same counts against a baseline of 65% fire")
	}
}

// TestLingeringJudge: of the callers read from the old and the new key, those that still depend on
// the old one remain, and a remaining client's finding says so in fields.
func TestLingeringJudge(t *testing.T) {
	d := NewLingering(nil, config.Default().Detect.Lingering)
	rot := &rotation.Rotation{ID: "kid_old>kid_new", OldKeyID: "kid_old", NewKeyID: "kid_new", ClientID: "acme",
		Started: now.Add(-2 * time.Hour), Deadline: now.Add(36 * time.Hour)}
	caller := func(requests uint64, last time.Duration) subUse {
		return subUse{Requests: requests, FirstSeen: now.Add(-110 * time.Minute), LastSeen: now.Add(-last), LastOK: now.Add(-last)}
	}
	host := func(client string) callerID { return callerID{client: client, ip: "192.0.2.1", ua: client + "/1.0"} }
	old := map[callerID]subUse{
		host("acme"):    caller(40, 30*time.Minute), // moved: new-key traffic since, quiet for 30m
		host("globex"):  caller(12, 10*time.Minute), // only the old key
		host("initech"): caller(3, 5*time.Minute),   // moved, but called the old key 5m ago
		host("ancient"): caller(9, 3*24*time.Hour),  // not since the rotation started
	}
	next := map[callerID]subUse{
		host("acme"):    caller(300, time.Minute),
		host("initech"): caller(100, time.Minute),
	}
	d.cfg.QuietFor = config.Duration(15 * time.Minute)
	clients := map[callerID]subUse{{client: "acme"}: next[host("acme")], {client: "initech"}: next[host("initech")]}
	got := d.remaining(rot, now, old, next, clients, nil).remaining
	var names []string
	for _, c := range got {
		names = append(names, c.ClientID)
	}
	if !slices.Equal(names, []string{"initech", "globex"}) {
		t.Fatalf("remaining %v, want initech (latest) and globex", names)
	}
	f := d.finding(rot, got[1], "globex", false, now)
	if f.Severity != finding.Info || f.ClientID != "globex" || !strings.Contains(f.Summary, "globex still calls kid_old; deadline in 1d12h") {
		t.Fatalf("finding %s %q", f.Severity, f.Summary)
	}
	checkFields(t, f, f.Evidence.(LingeringEvidence).fields())
	if !slices.Contains(f.Fields, finding.Field{Name: "Caller", Value: "globex"}) {
		t.Errorf("fields %q lack the caller", f.Fields)
	}
}

// TestHygieneJudge: an active key older than max_key_age and unused for longer than unused_after is
// two findings, each with its fields.
func TestHygieneJudge(t *testing.T) {
	d := NewHygiene(nil, config.Default().Detect.Hygiene)
	fs := d.judge(now, "kid_a", "acme", "active", now.Add(-200*24*time.Hour),
		keyUsage{requests: 5, firstSeen: now.Add(-199 * 24 * time.Hour), lastSeen: now.Add(-100 * 24 * time.Hour)})
	if len(fs) != 2 {
		t.Fatalf("%d findings, want policy_age and unused", len(fs))
	}
	for i, kind := range []string{hygienePolicyAge, hygieneUnused} {
		f := fs[i]
		ev := f.Evidence.(HygieneEvidence)
		if ev.Kind != kind || f.Severity != finding.Warning || f.Fingerprint != finding.Fingerprint("hygiene", "kid_a", "acme", kind) {
			t.Errorf("finding %d: %s %s %s, want a warning of %s", i, ev.Kind, f.Severity, f.Fingerprint, kind)
		}
		checkFields(t, f, ev.fields())
	}
	if fs := d.judge(now, "kid_b", "acme", "active", now.Add(-10*24*time.Hour), keyUsage{requests: 5, lastSeen: now.Add(-time.Hour)}); len(fs) != 0 {
		t.Errorf("a young key in use: %+v, want nothing", fs)
	}
}
