package alerting

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// silences is the silences API as of t0+at.
func (e *env) silences(at time.Duration) *SilenceAPI {
	s := NewSilenceAPI(e.conn, e.cfg, nil)
	s.now = func() time.Time { return t0.Add(at) }
	return s
}

// TestGet: Get reads one alert in full: evidence, labels, fields and action.
func TestGet(t *testing.T) {
	e := newEnv(t)
	f := newFinding("spike", "kid_old", "acme", "kid_old>kid_new", finding.Critical)
	f.Labels = map[string]string{finding.LabelStep: "revoked"}
	f.Fields.Add("Rotation", "kid_old → kid_new, revoked")
	e.run("spike", 0, "", f)
	e.eval(e.evaluator(), time.Minute)
	r := NewReader(e.conn)

	a, ok, err := r.Get(context.Background(), f.Fingerprint)
	if err != nil || !ok {
		t.Fatalf("Get: %v %v", ok, err)
	}
	var evidence map[string]any
	if err := json.Unmarshal(a.Evidence, &evidence); err != nil || evidence["requests"] != 42.0 {
		t.Fatalf("evidence %s (%v), want the finding's", a.Evidence, err)
	}
	wantAction := &ActionStatus{ID: "act-" + a.ID(), Kind: "revoke", Mode: "dry-run", Status: "dry_run"}
	if a.State != Firing || a.KeyID != "kid_old" || a.RotationID != "kid_old>kid_new" || !reflect.DeepEqual(a.Labels, f.Labels) ||
		!reflect.DeepEqual(a.Fields, f.Fields) || !reflect.DeepEqual(a.Action, wantAction) || !a.FiredAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Get: %+v (action %+v)", a, a.Action)
	}
	if a, ok, err := r.Get(context.Background(), "no-such-fingerprint"); ok || err != nil || a.Fingerprint != "" {
		t.Fatalf("Get of an unknown fingerprint: %+v %v %v, want none", a, ok, err)
	}
}

// TestHistory: an alert's history lists what a person cares about, newest first: pending, firing,
// the action, silenced, unsilenced, resolved; an evaluation that changes nothing adds nothing.
func TestHistory(t *testing.T) {
	e := newEnv(t)
	e.cfg.For = map[string]config.Duration{"default": config.Duration(10 * time.Minute)}
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	f := newFinding("lingering", "kid_old", "acme-billing", "", finding.Warning)
	ev := e.evaluator()
	ctx := context.Background()

	e.run("lingering", 0, "", f)
	e.eval(ev, time.Minute) // pending
	e.run("lingering", 10*time.Minute, "", f)
	e.eval(ev, 11*time.Minute) // firing, and the actor's dry run
	e.eval(ev, 12*time.Minute) // nothing new
	sil, err := e.silences(12*time.Minute).Create(ctx, NewSilence{
		Matchers: config.Matcher{"key_id": "kid_old"}, Duration: 2 * time.Hour, CreatedBy: "ana", Comment: "migrating",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.eval(ev, 13*time.Minute) // silenced
	if _, err := e.silences(20*time.Minute).Expire(ctx, sil.ID, "ana"); err != nil {
		t.Fatal(err)
	}
	e.eval(ev, 21*time.Minute) // unsilenced
	e.run("lingering", 2*time.Hour, "")
	e.eval(ev, 2*time.Hour+time.Minute) // resolved
	a := e.alert(f.Fingerprint)
	if a.State != Resolved {
		t.Fatalf("alert %+v, want resolved", a)
	}

	got, err := NewReader(e.conn).History(ctx, f.Fingerprint, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := a.ID()
	want := []Change{
		{At: t0.Add(2*time.Hour + time.Minute), AlertID: id, Event: EventResolved},
		{At: t0.Add(21 * time.Minute), AlertID: id, Event: EventUnsilenced, Detail: sil.ID},
		{At: t0.Add(13 * time.Minute), AlertID: id, Event: EventSilenced, Detail: sil.ID},
		{At: t0.Add(11 * time.Minute), AlertID: id, Event: EventAction, Detail: "revoke dry_run"},
		{At: t0.Add(11 * time.Minute), AlertID: id, Event: EventFiring},
		{At: t0.Add(time.Minute), AlertID: "", Event: EventPending},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("history\n%+v\nwant\n%+v", got, want)
	}
	if got, err := NewReader(e.conn).History(ctx, f.Fingerprint, 2); err != nil || !reflect.DeepEqual(got, want[:2]) {
		t.Fatalf("the latest 2: %+v %v, want %+v", got, err, want[:2])
	}

	// The same pass again (as after a retry) writes the same rows, read once.
	e.eval(e.evaluator(), 2*time.Hour+time.Minute)
	if err := writeHistory(ctx, e.conn, []historyRow{{Fingerprint: f.Fingerprint, Change: want[0]}}); err != nil {
		t.Fatal(err)
	}
	if got, err := NewReader(e.conn).History(ctx, f.Fingerprint, 0); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("history after a retried write: %+v %v", got, err)
	}
	if got, err := NewReader(e.conn).History(ctx, "no-such-fingerprint", 0); err != nil || len(got) != 0 {
		t.Fatalf("history of an unknown alert: %+v %v", got, err)
	}
}

// TestChanges: what one pass records of an alert's change, from before to after.
func TestChanges(t *testing.T) {
	open := alertOf(tf("lingering", 0, 0, "").Finding)
	open.State, open.ActiveSince = Pending, t0
	firing := open
	firing.State, firing.FiredAt = Firing, t0.Add(10*time.Minute)
	degraded := Alert{Fingerprint: "fp-degraded", Detector: DegradedDetector, State: Firing, ActiveSince: t0, FiredAt: t0.Add(time.Minute)}
	with := func(a Alert, f func(*Alert)) Alert { f(&a); return a }

	cases := []struct {
		name          string
		before, after Alert
		want          []string // event:detail
	}{
		{"new, pending", Alert{}, open, []string{"pending:"}},
		{"new, firing at once", Alert{}, firing, []string{"pending:", "firing:"}},
		{"new, silenced at once", Alert{}, with(firing, func(a *Alert) { a.Silenced = "sil-1" }), []string{"pending:", "firing:", "silenced:sil-1"}},
		{"degraded is raised firing", Alert{}, degraded, []string{"firing:"}},
		{"score only", firing, with(firing, func(a *Alert) { a.Score = 99; a.LastSeen = t0.Add(time.Hour) }), nil},
		{"inhibited", firing, with(firing, func(a *Alert) { a.Inhibited = "fp-src" }), []string{"inhibited:fp-src"}},
		{"uninhibited", with(firing, func(a *Alert) { a.Inhibited = "fp-src" }), firing, []string{"uninhibited:fp-src"}},
		{"another silence", with(firing, func(a *Alert) { a.Silenced = "sil-1" }), with(firing, func(a *Alert) { a.Silenced = "sil-2" }), []string{"silenced:sil-2"}},
		{"action decided", firing, with(firing, func(a *Alert) {
			a.Action = &ActionStatus{ID: "act", Kind: "revoke", Mode: "approve", Status: "awaiting_approval", Detail: "waiting for an approver"}
		}), []string{"action:revoke awaiting_approval: waiting for an approver"}},
		{"action detail only", with(firing, func(a *Alert) { a.Action = &ActionStatus{ID: "act", Kind: "revoke", Status: "failed", Detail: "503"} }),
			with(firing, func(a *Alert) { a.Action = &ActionStatus{ID: "act", Kind: "revoke", Status: "failed", Detail: "504"} }), nil},
		{"resolved, still silenced", with(firing, func(a *Alert) { a.Silenced = "sil-1" }),
			with(firing, func(a *Alert) { a.Silenced, a.State, a.ResolvedAt = "sil-1", Resolved, t0.Add(time.Hour) }), []string{"resolved:"}},
		{"new episode of a silenced alert", with(firing, func(a *Alert) { a.Silenced, a.State = "sil-1", Resolved }),
			with(open, func(a *Alert) { a.ActiveSince, a.Silenced = t0.Add(2*time.Hour), "sil-1" }), []string{"pending:", "silenced:sil-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, r := range changes(c.before, c.after, t0) {
				got = append(got, r.Event+":"+r.Detail)
				if r.Fingerprint != c.after.Fingerprint || !r.At.Equal(t0) {
					t.Errorf("row %+v, want of %s at %s", r, c.after.Fingerprint, t0)
				}
				if wantID := c.after.ID(); (r.Event == EventPending || c.after.FiredAt.IsZero()) && r.AlertID != "" || r.Event != EventPending && !c.after.FiredAt.IsZero() && r.AlertID != wantID {
					t.Errorf("row %+v: alert id %q", r, r.AlertID)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("changes %q, want %q", got, c.want)
			}
		})
	}
}
