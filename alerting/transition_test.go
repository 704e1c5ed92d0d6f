package alerting

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// The alert state machine without a database: every transition of transition, from hand-built
// alerts, findings and runs.

// transitionCfg waits 10 minutes before firing and resolves an hour after the last finding; three
// failed runs degrade a detector.
func transitionCfg() config.Alerting {
	return config.Alerting{
		For:           map[string]config.Duration{"default": config.Duration(10 * time.Minute), "hygiene": 0},
		ResolveAfter:  map[string]config.Duration{"default": config.Duration(time.Hour)},
		DegradedAfter: 3,
	}
}

// tf is a finding of detector on kid_t found at t0+at by run runID, first found (after the alert's
// last_seen) at t0+first; first < 0: nothing new.
func tf(detector string, at, first time.Duration, runID string) finding.Latest {
	f := finding.New(detector, t0.Add(at), "kid_t", "acme", "")
	f.Severity, f.Score, f.Summary = finding.Warning, 10, detector+" on kid_t"
	f.Labels = map[string]string{"signal": "new_network"}
	f.Fields = []finding.Field{{Name: "Window", Value: "10 requests"}}
	f.Evidence = json.RawMessage(`{"requests":42}`)
	l := finding.Latest{Finding: f, RunID: runID}
	if first >= 0 {
		l.FirstAfter = t0.Add(first)
	}
	return l
}

// tr is a run of a detector started at t0+at; errText non-empty: it failed.
func tr(id string, at time.Duration, errText string) finding.Run {
	r := finding.Run{ID: id, Started: t0.Add(at), Finished: t0.Add(at + time.Second)}
	if errText != "" {
		r.Err = errors.New(errText)
	}
	return r
}

// ta is a stored alert of tf's fingerprint in state, active since t0+active, last seen at t0+seen.
func ta(detector string, state State, active, seen time.Duration) stored {
	a := alertOf(tf(detector, seen, -1, "").Finding)
	a.State, a.ActiveSince = state, t0.Add(active)
	if state != Pending {
		a.FiredAt = t0.Add(active + 10*time.Minute)
	}
	if state == Resolved {
		a.ResolvedAt = t0.Add(seen + time.Hour)
	}
	return stored{Alert: a, version: 7}
}

func fp(detector string) string { return finding.Fingerprint(detector, "kid_t", "acme", "") }

func TestTransition(t *testing.T) {
	const m = time.Minute
	cases := []struct {
		name  string
		prev  []stored
		finds []finding.Latest
		runs  map[string][]finding.Run
		now   time.Duration
		// want is the state of the spike alert (or of detector's) after now; "" for no alert.
		detector string
		want     State
		check    func(t *testing.T, a *stored)
	}{
		{name: "first finding opens a pending alert", finds: []finding.Latest{tf("spike", 0, 0, "r1")},
			runs: map[string][]finding.Run{"spike": {tr("r1", 0, "")}}, now: m, want: Pending,
			check: func(t *testing.T, a *stored) {
				if !a.ActiveSince.Equal(t0) || !a.LastSeen.Equal(t0) || !a.FiredAt.IsZero() {
					t.Errorf("active since %s, last seen %s, fired %s", a.ActiveSince, a.LastSeen, a.FiredAt)
				}
				if a.Labels["signal"] != "new_network" || len(a.Fields) != 1 || a.Fields[0].Value != "10 requests" || string(a.Evidence) != `{"requests":42}` {
					t.Errorf("labels %v, fields %v, evidence %s: want the finding's", a.Labels, a.Fields, a.Evidence)
				}
			}},
		{name: "a finding with nothing new opens nothing", finds: []finding.Latest{tf("spike", 0, -1, "r1")}, now: m},
		{name: "pending fires after for", prev: []stored{ta("spike", Pending, 0, 0)},
			finds: []finding.Latest{tf("spike", 10*m, -1, "r2")}, runs: map[string][]finding.Run{"spike": {tr("r2", 10*m, "")}}, now: 10 * m, want: Firing,
			check: func(t *testing.T, a *stored) {
				if !a.FiredAt.Equal(t0.Add(10*m)) || !a.LastSeen.Equal(t0.Add(10*m)) || a.version != 7 {
					t.Errorf("fired %s, last seen %s, version %d", a.FiredAt, a.LastSeen, a.version)
				}
			}},
		{name: "pending waits for for", prev: []stored{ta("spike", Pending, 0, 0)},
			finds: []finding.Latest{tf("spike", 5*m, -1, "r2")}, runs: map[string][]finding.Run{"spike": {tr("r2", 5*m, "")}}, now: 9 * m, want: Pending},
		{name: "a detector with for 0 fires at once", finds: []finding.Latest{tf("hygiene", 0, 0, "r1")},
			runs: map[string][]finding.Run{"hygiene": {tr("r1", 0, "")}}, now: 0, detector: "hygiene", want: Firing},
		{name: "pending missed by a successful run resolves without firing", prev: []stored{ta("spike", Pending, 0, 0)},
			runs: map[string][]finding.Run{"spike": {tr("r2", 5*m, ""), tr("r1", 0, "")}}, now: 5 * m, want: Resolved,
			check: func(t *testing.T, a *stored) {
				if !a.FiredAt.IsZero() || !a.ResolvedAt.Equal(t0.Add(5*m)) {
					t.Errorf("fired %s, resolved %s: want never fired, resolved now", a.FiredAt, a.ResolvedAt)
				}
			}},
		{name: "a failed run resolves nothing pending", prev: []stored{ta("spike", Pending, 0, 0)},
			runs: map[string][]finding.Run{"spike": {tr("r2", 5*m, "boom")}}, now: 10 * m, want: Firing},
		{name: "the run that found it does not miss it", prev: []stored{ta("spike", Pending, 0, 0)},
			finds: []finding.Latest{tf("spike", 0, -1, "r1")}, runs: map[string][]finding.Run{"spike": {tr("r1", time.Second, "")}}, now: 5 * m, want: Pending},
		{name: "firing missed resolves after resolve_after", prev: []stored{ta("spike", Firing, 0, 0)},
			runs: map[string][]finding.Run{"spike": {tr("r2", 30*m, "")}}, now: 60 * m, want: Resolved,
			check: func(t *testing.T, a *stored) {
				if !a.ResolvedAt.Equal(t0.Add(60*m)) || a.FiredAt.IsZero() {
					t.Errorf("resolved %s, fired %s", a.ResolvedAt, a.FiredAt)
				}
			}},
		{name: "firing missed keeps firing before resolve_after", prev: []stored{ta("spike", Firing, 0, 0)},
			runs: map[string][]finding.Run{"spike": {tr("r2", 30*m, "")}}, now: 59 * m, want: Firing},
		{name: "firing and found keeps firing", prev: []stored{ta("spike", Firing, 0, 0)},
			finds: []finding.Latest{tf("spike", 90*m, -1, "r3")}, runs: map[string][]finding.Run{"spike": {tr("r3", 90*m, "")}}, now: 2 * time.Hour, want: Firing,
			check: func(t *testing.T, a *stored) {
				if !a.LastSeen.Equal(t0.Add(90 * m)) {
					t.Errorf("last seen %s, want the latest finding's", a.LastSeen)
				}
			}},
		{name: "firing with its detector failing keeps firing", prev: []stored{ta("spike", Firing, 0, 0)},
			runs: map[string][]finding.Run{"spike": {tr("r2", 30*m, "boom")}}, now: 5 * time.Hour, want: Firing},
		{name: "a reported finding resolves on resolve_after alone", prev: []stored{ta(reportDetector, Firing, 0, 0)},
			runs: map[string][]finding.Run{reportDetector: {tr("r9", 5*m, "")}}, now: 60 * m, detector: reportDetector, want: Resolved},
		{name: "a reported finding fires until resolve_after", prev: []stored{ta(reportDetector, Firing, 0, 0)},
			runs: map[string][]finding.Run{reportDetector: {tr("r9", 5*m, "")}}, now: 59 * m, detector: reportDetector, want: Firing},
		{name: "a detector that never ran resolves on resolve_after alone", prev: []stored{ta("spike", Firing, 0, 0)}, now: 60 * m, want: Resolved},
		{name: "a finding after a resolved episode opens a new one", prev: []stored{ta("spike", Resolved, 0, 0)},
			finds: []finding.Latest{tf("spike", 2*time.Hour+5*m, 2*time.Hour, "r5")}, runs: map[string][]finding.Run{"spike": {tr("r5", 2*time.Hour+5*m, "")}},
			now: 2*time.Hour + 5*m, want: Pending,
			check: func(t *testing.T, a *stored) {
				if !a.ActiveSince.Equal(t0.Add(2*time.Hour)) || !a.FiredAt.IsZero() || !a.ResolvedAt.IsZero() || a.version != 7 {
					t.Errorf("active since %s, fired %s, resolved %s, version %d: want a new episode keeping the row version",
						a.ActiveSince, a.FiredAt, a.ResolvedAt, a.version)
				}
			}},
		{name: "a new episode found for longer than for fires in the same pass", prev: []stored{ta("spike", Resolved, 0, 0)},
			finds: []finding.Latest{tf("spike", 3*time.Hour, 2*time.Hour, "r5")}, runs: map[string][]finding.Run{"spike": {tr("r5", 3*time.Hour, "")}},
			now: 3 * time.Hour, want: Firing},
		{name: "a resolved alert stays resolved without a later finding", prev: []stored{ta("spike", Resolved, 0, time.Hour)},
			finds: []finding.Latest{tf("spike", time.Hour, 30*m, "r5")}, now: 3 * time.Hour, want: Resolved},
		{name: "the latest finding updates an open alert", prev: []stored{ta("spike", Firing, 0, 0)},
			finds: func() []finding.Latest {
				f := tf("spike", 20*m, -1, "r2")
				f.Severity, f.Summary, f.Labels, f.Fields = finding.Critical, "worse", map[string]string{"step": "revoked"}, []finding.Field{{Name: "Failures", Value: "40"}}
				return []finding.Latest{f}
			}(), runs: map[string][]finding.Run{"spike": {tr("r2", 20*m, "")}}, now: 20 * m, want: Firing,
			check: func(t *testing.T, a *stored) {
				if a.Severity != finding.Critical || a.Summary != "worse" || a.Labels["step"] != "revoked" || a.Fields[0].Name != "Failures" {
					t.Errorf("%+v: want the latest finding's severity, summary, labels and fields", a.Alert)
				}
			}},
		{name: "an older finding does not move last_seen back", prev: []stored{ta("spike", Firing, 0, 30*m)},
			finds: []finding.Latest{tf("spike", 20*m, -1, "r2")}, now: 31 * m, want: Firing,
			check: func(t *testing.T, a *stored) {
				if !a.LastSeen.Equal(t0.Add(30 * m)) {
					t.Errorf("last seen %s, want %s", a.LastSeen, t0.Add(30*m))
				}
			}},
		{name: "a detector failing its last runs degrades", runs: map[string][]finding.Run{"spike": {tr("r3", 20*m, "boom"), tr("r2", 10*m, "bang"), tr("r1", 0, "bang")}},
			now: 21 * m, detector: DegradedDetector, want: Firing,
			check: func(t *testing.T, a *stored) {
				if !a.ActiveSince.Equal(t0) || !a.FiredAt.Equal(t0.Add(21*m)) || !a.LastSeen.Equal(t0.Add(20*m)) || a.Severity != finding.Warning || a.Score != 3 {
					t.Errorf("%+v", a.Alert)
				}
				if a.Summary != "detector spike failed its last 3 runs: boom" || a.Labels[LabelFailingDetector] != "spike" || GroupKey(a.Alert) != "detector:spike" {
					t.Errorf("summary %q, labels %v, group %s", a.Summary, a.Labels, GroupKey(a.Alert))
				}
				want := finding.Fields{{Name: "Detector", Value: "spike"}, {Name: "Failed runs", Value: "3"}, {Name: "Last error", Value: "boom"},
					{Name: "Last failure", Value: "2026-11-20 12:20 UTC"}}
				if !reflect.DeepEqual(a.Fields, want) {
					t.Errorf("fields %v, want %v", a.Fields, want)
				}
			}},
		{name: "fewer failed runs than degraded_after degrade nothing", runs: map[string][]finding.Run{"spike": {tr("r3", 20*m, "boom"), tr("r2", 10*m, "bang"), tr("r1", 0, "")}},
			now: 21 * m, detector: DegradedDetector},
		{name: "a degraded detector's success resolves it", prev: []stored{{Alert: Alert{Fingerprint: finding.Fingerprint(DegradedDetector, "", "", "spike"),
			Detector: DegradedDetector, State: Firing, ActiveSince: t0, FiredAt: t0, LastSeen: t0}}},
			runs: map[string][]finding.Run{"spike": {tr("r4", 30*m, ""), tr("r3", 20*m, "boom"), tr("r2", 10*m, "bang")}},
			now:  31 * m, detector: DegradedDetector, want: Resolved},
		{name: "a degraded detector still failing keeps its episode", prev: []stored{{Alert: Alert{Fingerprint: finding.Fingerprint(DegradedDetector, "", "", "spike"),
			Detector: DegradedDetector, State: Firing, ActiveSince: t0.Add(-time.Hour), FiredAt: t0, LastSeen: t0}}},
			runs: map[string][]finding.Run{"spike": {tr("r5", 40*m, "late"), tr("r4", 30*m, "boom"), tr("r3", 20*m, "boom")}},
			now:  41 * m, detector: DegradedDetector, want: Firing,
			check: func(t *testing.T, a *stored) {
				if !a.ActiveSince.Equal(t0.Add(-time.Hour)) || !a.FiredAt.Equal(t0) || !a.LastSeen.Equal(t0.Add(40*m)) || a.Summary != "detector spike failed its last 3 runs: late" {
					t.Errorf("%+v", a.Alert)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prev := map[string]stored{}
			for _, p := range c.prev {
				prev[p.Fingerprint] = p
			}
			before := maps.Clone(prev)
			finds := map[string]finding.Latest{}
			for _, f := range c.finds {
				finds[f.Fingerprint] = f
			}
			det := c.detector
			if det == "" {
				det = "spike"
			}
			key := fp(det)
			if det == DegradedDetector {
				key = finding.Fingerprint(DegradedDetector, "", "", "spike")
			}
			next := transition(prev, finds, c.runs, t0.Add(c.now), transitionCfg())
			a := next[key]
			switch {
			case c.want == "" && a != nil:
				t.Fatalf("an alert %s, want none", a.State)
			case c.want == "":
				return
			case a == nil:
				t.Fatalf("no alert, want %s", c.want)
			case a.State != c.want:
				t.Fatalf("state %s, want %s", a.State, c.want)
			}
			if c.check != nil {
				c.check(t, a)
			}
			if !reflect.DeepEqual(prev, before) {
				t.Errorf("transition changed its input")
			}
		})
	}
}
