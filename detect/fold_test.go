package detect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// fixed is a detector that finds what it is given.
type fixed struct {
	name     string
	findings []finding.Finding
}

func (d fixed) Name() string { return d.name }
func (d fixed) Detect(context.Context, time.Time) ([]finding.Finding, error) {
	return slices.Clone(d.findings), nil
}

// callerFinding is a lingering-like finding about client on key, in rotation rot.
func callerFinding(key, client, rot string, sev finding.Severity, score float64) finding.Finding {
	f := finding.New("probe", now, key, client, rot)
	f.Severity, f.Score, f.Summary = sev, score, client+" still calls "+key
	ev := LingeringEvidence{OldKeyID: key, RotationID: rot, Caller: Caller{ClientID: client, Requests: uint64(score)}}
	f.Evidence, f.Fields = ev, ev.fields()
	f.Labels = map[string]string{"client": client, "kind": "caller"}
	return f
}

// TestEngineCapsFindings: a detector finds 5,000 things about one key (10 critical) and 3 about
// another in one run. The engine keeps the 19 most urgent about the first key and folds the other
// 4,981 into one finding that says so, with a fingerprint of its own; the other key's findings
// are untouched. The same findings in another order give the same run.
func TestEngineCapsFindings(t *testing.T) {
	var fs []finding.Finding
	for i := range 5000 {
		sev := finding.Warning
		if i < 10 {
			sev = finding.Critical
		}
		fs = append(fs, callerFinding("kid_hot", fmt.Sprintf("c%04d", i), "kid_hot>kid_new", sev, float64(10000-i)))
	}
	for i := range 3 {
		fs = append(fs, callerFinding("kid_calm", fmt.Sprintf("calm%d", i), "", finding.Info, float64(i)))
	}
	run := func(fs []finding.Finding) []finding.Finding {
		t.Helper()
		e := NewEngine([]Scheduled{{Detector: fixed{"probe", fs}}}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		runs, err := e.RunOnce(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		return runs[0].Findings
	}
	got := run(fs)
	if len(got) != MaxFindingsPerKey+3 {
		t.Fatalf("%d findings, want %d about kid_hot and 3 about kid_calm", len(got), MaxFindingsPerKey)
	}
	var hot, calm []finding.Finding
	for _, f := range got {
		if f.KeyID == "kid_hot" {
			hot = append(hot, f)
		} else {
			calm = append(calm, f)
		}
	}
	if len(hot) != MaxFindingsPerKey || len(calm) != 3 {
		t.Fatalf("%d findings about kid_hot and %d about kid_calm, want %d and 3", len(hot), len(calm), MaxFindingsPerKey)
	}
	for i, f := range hot[:MaxFindingsPerKey-1] {
		if want := fmt.Sprintf("c%04d", i); f.ClientID != want {
			t.Errorf("kept finding %d is about %s, want %s (the most urgent first)", i, f.ClientID, want)
		}
	}
	f := hot[MaxFindingsPerKey-1]
	if f.Fingerprint != finding.Fingerprint("probe", "kid_hot", "(folded)", "kid_hot>kid_new") || f.ClientID != "" ||
		f.RotationID != "kid_hot>kid_new" || f.Severity != finding.Warning || f.Score != 10000-19 {
		t.Errorf("folded finding %+v: want the fold's fingerprint, no client, the rotation, warning, the first folded one's score", f)
	}
	if want := "4981 probe findings about kid_hot folded into one (a run reports at most 20 about a key); the first: c0019 still calls kid_hot"; f.Summary != want {
		t.Errorf("summary\n got %q\nwant %q", f.Summary, want)
	}
	ev, ok := f.Evidence.(LingeringEvidence)
	if !ok || ev.FoldedFindings != 4981 || ev.Caller.ClientID != "c0019" {
		t.Errorf("evidence %#v: want the first folded finding's LingeringEvidence with folded_findings 4981", f.Evidence)
	}
	// The count is the folded finding's first field, before the first folded one's fields; of the
	// labels, those all the folded findings share.
	first := callerFinding("kid_hot", "c0019", "kid_hot>kid_new", finding.Warning, 10000-19)
	if want := append([]finding.Field{{Name: FieldFoldedFindings, Value: "4981"}}, first.Fields...); !slices.Equal(f.Fields, want) {
		t.Errorf("fields of the folded finding\n got %q\nwant %q", f.Fields, want)
	}
	if len(f.Labels) != 1 || f.Labels["kind"] != "caller" {
		t.Errorf("labels of the folded finding %v, want only kind=caller", f.Labels)
	}
	if hot[0].Labels["client"] != "c0000" || len(hot[0].Fields) != len(first.Fields) {
		t.Errorf("kept finding changed: labels %v, fields %q", hot[0].Labels, hot[0].Fields)
	}
	for i, f := range calm {
		if want := fmt.Sprintf("calm%d", 2-i); f.ClientID != want || f.Evidence.(LingeringEvidence).FoldedFindings != 0 {
			t.Errorf("kid_calm's finding %d: %+v, want %s untouched", i, f, want)
		}
	}

	slices.Reverse(fs)
	again := run(fs)
	if !slices.EqualFunc(got, again, func(a, b finding.Finding) bool { return a.Fingerprint == b.Fingerprint && a.Summary == b.Summary }) {
		t.Errorf("the same findings in another order give another run")
	}
}

// TestCapFindingsPerRun: 1,000 keys with a finding each and one key with 30, ranked above them:
// the run keeps the busy key's 19 and its folded finding, then the 479 most urgent others, and
// folds the other 521 into one finding about no key in particular. Evidence that cannot hold the
// count is wrapped in FoldedEvidence.
func TestCapFindingsPerRun(t *testing.T) {
	var fs []finding.Finding
	for i := range 30 {
		fs = append(fs, callerFinding("kid_busy", fmt.Sprintf("c%02d", i), "kid_busy>kid_next", finding.Critical, float64(100-i)))
	}
	for i := range 1000 {
		f := finding.New("probe", now, fmt.Sprintf("kid_%04d", i), "", "")
		f.Severity, f.Score, f.Summary, f.Evidence = finding.Warning, float64(1000-i), fmt.Sprintf("kid_%04d looks odd", i), map[string]int{"n": i}
		fs = append(fs, f)
	}
	got := capFindings(fs, MaxFindingsPerKey, MaxFindingsPerRun)
	if len(got) != MaxFindingsPerRun {
		t.Fatalf("%d findings, want %d", len(got), MaxFindingsPerRun)
	}
	if f := got[MaxFindingsPerKey-1]; f.KeyID != "kid_busy" || f.Evidence.(LingeringEvidence).FoldedFindings != 11 {
		t.Errorf("finding %d: %+v, want kid_busy's folded finding standing for 11", MaxFindingsPerKey-1, f)
	}
	if f := got[MaxFindingsPerRun-2]; f.KeyID != "kid_0478" {
		t.Errorf("the last kept finding is about %s, want kid_0478", f.KeyID)
	}
	f := got[MaxFindingsPerRun-1]
	if f.KeyID != "" || f.Fingerprint != finding.Fingerprint("probe", "", "(folded)", "") || f.Severity != finding.Warning || f.Score != 1000-479 {
		t.Errorf("the run's folded finding %+v: want no key, the run fold's fingerprint, warning, the first folded one's score", f)
	}
	if want := "521 probe findings about 521 keys folded into one (a run reports at most 500); the first: kid_0479 looks odd"; f.Summary != want {
		t.Errorf("summary\n got %q\nwant %q", f.Summary, want)
	}
	ev, ok := f.Evidence.(FoldedEvidence)
	if !ok || ev.FoldedFindings != 521 || !strings.Contains(fmt.Sprint(ev.First), "n:479") {
		t.Errorf("evidence %#v: want FoldedEvidence of 521 with the first folded finding's evidence", f.Evidence)
	}
	if len(f.Fields) == 0 || f.Fields[0] != (finding.Field{Name: FieldFoldedFindings, Value: "521"}) {
		t.Errorf("fields of the run's folded finding %q, want the count of 521 first", f.Fields)
	}
	if f := got[MaxFindingsPerKey-1]; len(f.Fields) == 0 || f.Fields[0] != (finding.Field{Name: FieldFoldedFindings, Value: "11"}) {
		t.Errorf("fields of kid_busy's folded finding %q, want the count of 11 first", f.Fields)
	}

	// Under the caps, findings are only sorted.
	few := []finding.Finding{callerFinding("a", "x", "", finding.Info, 1), callerFinding("a", "y", "", finding.Critical, 1)}
	if got := capFindings(few, MaxFindingsPerKey, MaxFindingsPerRun); len(got) != 2 || got[0].ClientID != "y" {
		t.Errorf("two findings: %+v, want both, critical first", got)
	}
	if got := capFindings(nil, MaxFindingsPerKey, MaxFindingsPerRun); got != nil {
		t.Errorf("no findings: %+v, want nil", got)
	}
}

// TestListedCallers: a readiness answer lists at most n callers, latest first, identified clients
// before the callers without a client however recent those are, and counts the rest.
func TestListedCallers(t *testing.T) {
	cs := []Caller{{ClientID: "old-client", LastSeen: now.Add(-time.Hour)}}
	for i := range 60 {
		cs = append(cs, Caller{IP: "203.0.113.1", UserAgent: fmt.Sprintf("ua/%d", i), LastSeen: now.Add(-time.Duration(i) * time.Second)})
	}
	sortCallers(cs)
	got, unlisted := listed(cs, 10)
	if len(got) != 10 || unlisted != 51 {
		t.Fatalf("%d listed, %d unlisted; want 10 and 51", len(got), unlisted)
	}
	if got[0].UserAgent != "ua/0" || got[8].UserAgent != "ua/8" || got[9].ClientID != "old-client" {
		t.Errorf("listed %+v: want ua/0 to ua/8, then old-client", got)
	}
	if got, unlisted := listed(cs[:5], 10); len(got) != 5 || unlisted != 0 {
		t.Errorf("5 callers: %d listed, %d unlisted; want all, 0", len(got), unlisted)
	}
}

// TestMergeCallers: callers without a client summed into one: traffic on both keys, the share on
// the new key, first and last seen, busiest addresses and user agents.
func TestMergeCallers(t *testing.T) {
	cs := []Caller{
		{IP: "192.0.2.1", UserAgent: "a/1", Requests: 6, Failures: 1, FirstSeen: now.Add(-3 * time.Hour), LastSeen: now.Add(-time.Hour),
			NewKeyRequests: 10, NewKeyLastSeen: ptr(now.Add(-2 * time.Hour))},
		{IP: "192.0.2.1", UserAgent: "b/1", Requests: 2, FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-time.Minute)},
		{IP: "192.0.2.2", UserAgent: "b/1", Requests: 2, Failures: 2, FirstSeen: now.Add(-4 * time.Hour), LastSeen: now.Add(-2 * time.Hour),
			NewKeyRequests: 10, NewKeyLastSeen: ptr(now.Add(-30 * time.Minute))},
	}
	c, addresses, userAgents := merge(cs)
	sameCaller(t, "merged", c, Caller{
		Requests: 10, Failures: 3, FirstSeen: now.Add(-4 * time.Hour), LastSeen: now.Add(-time.Minute),
		NewKeyRequests: 20, NewKeyShare: 2.0 / 3, NewKeyLastSeen: ptr(now.Add(-30 * time.Minute)),
		TopIPs: []Count{{"192.0.2.1", 8}, {"192.0.2.2", 2}}, TopUserAgents: []Count{{"a/1", 6}, {"b/1", 4}},
	})
	if addresses != 2 || userAgents != 2 {
		t.Errorf("%d addresses, %d user agents; want 2 and 2", addresses, userAgents)
	}
	if c, _, _ := merge(cs[:1]); c.IP != "192.0.2.1" || c.TopIPs != nil {
		t.Errorf("one caller merged: %+v, want it as it is", c)
	}
}
