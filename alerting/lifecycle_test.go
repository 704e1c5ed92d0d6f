package alerting

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// step is one moment of a lifecycle: a run of the detector (found it, found nothing, or failed),
// then an evaluation, then the state the alert must be in.
type step struct {
	at     time.Duration
	run    string // "found", "empty", "failed" or "" (no run)
	want   State  // "" : no alert
	notify int    // notifications expected from this evaluation
}

func TestLifecycle(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name         string
		forD, resolv time.Duration
		steps        []step
	}{
		{"pending, then firing after for", 10 * time.Minute, h, []step{
			{0, "found", Pending, 0},
			{5 * time.Minute, "found", Pending, 0},
			{10 * time.Minute, "found", Firing, 1},
			{15 * time.Minute, "found", Firing, 0},
		}},
		{"pending not found again ends without firing or notifying", 10 * time.Minute, h, []step{
			{0, "found", Pending, 0},
			{5 * time.Minute, "empty", Resolved, 0},
			{20 * time.Minute, "empty", Resolved, 0},
		}},
		{"sparse nightly finding does not flap", 0, 25 * h, []step{
			{0, "found", Firing, 1},
			{6 * h, "empty", Firing, 0},
			{12 * h, "empty", Firing, 0},
			{18 * h, "empty", Firing, 0},
			{24 * h, "found", Firing, 0},
			{30 * h, "empty", Firing, 0},
			{48 * h, "empty", Firing, 0},
			{50 * h, "empty", Resolved, 1},
		}},
		{"failed runs never resolve", 0, h, []step{
			{0, "found", Firing, 1},
			{2 * h, "failed", Firing, 0},
			{3 * h, "failed", Firing, 0},
			{4 * h, "", Firing, 0},
			{5 * h, "empty", Resolved, 1},
		}},
		{"quiet for resolve_after but the latest run failed", 0, h, []step{
			{0, "found", Firing, 1},
			{30 * time.Minute, "empty", Firing, 0},
			{2 * h, "failed", Firing, 0},
			{3 * h, "empty", Resolved, 1},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.cfg.For = map[string]config.Duration{"default": config.Duration(c.forD)}
			e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(c.resolv)}
			e.cfg.RepeatInterval = config.Duration(1000 * h)
			f := newFinding("lingering", "kid_old", "acme-billing", "rot-1", finding.Warning)
			ev := e.evaluator()
			var fired time.Time
			for _, s := range c.steps {
				switch s.run {
				case "found":
					e.run("lingering", s.at, "", f)
				case "empty":
					e.run("lingering", s.at, "")
				case "failed":
					e.run("lingering", s.at, "query timed out")
				}
				e.eval(ev, s.at+time.Minute)
				a := e.alert(f.Fingerprint)
				if a.State != s.want {
					t.Fatalf("at %s: state %q, want %q", s.at, a.State, s.want)
				}
				if got := e.notifier.take(); len(got) != s.notify {
					t.Fatalf("at %s: %d notifications %v, want %d", s.at, len(got), summary(got), s.notify)
				}
				if a.State == Firing {
					if !fired.IsZero() && !a.FiredAt.Equal(fired) {
						t.Fatalf("at %s: fired at %s, first fired at %s", s.at, a.FiredAt, fired)
					}
					fired = a.FiredAt
				}
			}
		})
	}
}

// TestNewEpisode: a resolved alert found again is a new episode with its own id, and its actions
// are asked for anew.
func TestNewEpisode(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	f := newFinding("leak", "kid_live", "", "", finding.Critical)
	ev := e.evaluator()
	e.run("leak", 0, "", f)
	e.eval(ev, time.Minute)
	first := e.alert(f.Fingerprint)
	if first.State != Firing || first.Action == nil || first.Action.ID != "act-"+first.ID() {
		t.Fatalf("first episode: %+v", first)
	}
	e.run("leak", 2*time.Hour, "")
	e.eval(ev, 2*time.Hour+time.Minute)
	if a := e.alert(f.Fingerprint); a.State != Resolved || a.ID() != first.ID() {
		t.Fatalf("after a quiet run: %+v, want resolved %s", a, first.ID())
	}
	e.run("leak", 3*time.Hour, "", f)
	e.eval(ev, 3*time.Hour+time.Minute)
	second := e.alert(f.Fingerprint)
	if second.State != Firing || second.ID() == first.ID() || !second.ActiveSince.Equal(t0.Add(3*time.Hour)) || !second.ResolvedAt.IsZero() {
		t.Fatalf("found again: %+v (id %s), want a new firing episode since %s", second, second.ID(), t0.Add(3*time.Hour))
	}
	asked := e.actor.take()
	if !slices.Contains(asked, first.ID()) || !slices.Contains(asked, second.ID()) {
		t.Fatalf("actor asked about %v, want both episodes %s and %s", asked, first.ID(), second.ID())
	}
	got := summary(e.notifier.take())
	want := []string{"#keywatch key:kid_live =firing", "#keywatch key:kid_live =resolved resolved", "#keywatch key:kid_live =firing"}
	if !slices.Equal(got, want) {
		t.Fatalf("notifications %q, want %q", got, want)
	}
}

// TestDegraded: a detector failing degraded_after times in a row raises detection_degraded,
// which resolves after its next success.
func TestDegraded(t *testing.T) {
	e := newEnv(t)
	e.cfg.DegradedAfter = 3
	ev := e.evaluator()
	fp := finding.Fingerprint(DegradedDetector, "", "", "spike")
	for i := range 2 {
		e.run("spike", time.Duration(i)*time.Minute, "code 241: memory limit exceeded")
		e.eval(ev, time.Duration(i)*time.Minute+time.Second)
	}
	if a := e.alert(fp); a.State != "" {
		t.Fatalf("after 2 failures: %+v, want no alert", a)
	}
	e.run("spike", 2*time.Minute, "code 159: timeout exceeded")
	e.eval(ev, 2*time.Minute+time.Second)
	a := e.alert(fp)
	if a.State != Firing || a.Detector != DegradedDetector || a.Severity != finding.Warning ||
		!strings.Contains(a.Summary, "spike") || !strings.Contains(a.Summary, "timeout exceeded") {
		t.Fatalf("after 3 failures: %+v", a)
	}
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#keywatch detector:spike =firing"}) {
		t.Fatalf("notifications %q", got)
	}
	if asked := e.actor.take(); len(asked) != 1 {
		t.Fatalf("actor asked %v", asked)
	}
	e.run("spike", 3*time.Minute, "")
	e.eval(ev, 3*time.Minute+time.Second)
	if a := e.alert(fp); a.State != Resolved {
		t.Fatalf("after a success: %+v, want resolved", a)
	}
	e.eval(ev, 10*time.Minute)
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#keywatch detector:spike =resolved resolved"}) {
		t.Fatalf("notifications %q", got)
	}
}

// TestRestart: a new Evaluator over the same database keeps the alert's FiredAt and tells
// nothing twice, neither the firing nor the resolution; the Actor is asked about the same id.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	f := newFinding("spike", "kid_new", "acme-billing", "rot-9", finding.Critical)
	e.run("spike", 0, "", f)
	e.eval(e.evaluator(), time.Minute)
	first := e.alert(f.Fingerprint)
	if got := e.notifier.take(); len(got) != 1 {
		t.Fatalf("first pass: %q", summary(got))
	}
	e.run("spike", 10*time.Minute, "", f)
	ev := e.evaluator() // restart
	e.eval(ev, 11*time.Minute)
	if a := e.alert(f.Fingerprint); !a.FiredAt.Equal(first.FiredAt) || a.ID() != first.ID() {
		t.Fatalf("after restart: fired at %s (id %s), want %s", a.FiredAt, a.ID(), first.ID())
	}
	if got := e.notifier.take(); len(got) != 0 {
		t.Fatalf("after restart: %q, want nothing", summary(got))
	}
	if asked := e.actor.take(); !slices.Equal(asked, []string{first.ID(), first.ID()}) {
		t.Fatalf("actor asked %v, want %s twice", asked, first.ID())
	}
	e.run("spike", 2*time.Hour, "")
	e.eval(ev, 2*time.Hour+time.Minute)
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#keywatch rotation:rot-9 acme-billing=resolved resolved"}) {
		t.Fatalf("resolution: %q", got)
	}
	e.eval(e.evaluator(), 2*time.Hour+2*time.Minute) // restart
	e.eval(e.evaluator(), 9*time.Hour)               // and again, much later
	if got := e.notifier.take(); len(got) != 0 {
		t.Fatalf("after restarts: %q, want nothing", summary(got))
	}
}

// TestReported: findings that are reported, not scanned for (leak reports: each run is one
// report; or a detector that never ran), resolve on resolve_after alone.
func TestReported(t *testing.T) {
	e := newEnv(t)
	week := 7 * 24 * time.Hour
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(week)}
	leak := newFinding("leak_report", "kid_live", "", "", finding.Critical)
	other := newFinding("leak_report", "kid_other", "", "", finding.Critical)
	manual := newFinding("manual", "kid_manual", "", "", finding.Warning)
	e.run("leak_report", 0, "", leak)
	if err := e.conn.Exec(context.Background(), `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
		VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'manual-1', ?, ?, 'warning', 1, ?, '', '', 'found by hand', '{}')`, t0.UnixMilli(), manual.Detector, manual.Fingerprint, manual.KeyID); err != nil {
		t.Fatal(err)
	}
	ev := e.evaluator()
	e.eval(ev, time.Minute)
	e.run("leak_report", time.Hour, "", other) // another report: says nothing about kid_live
	for _, c := range []struct {
		at   time.Duration
		want State
	}{{2 * time.Hour, Firing}, {6 * 24 * time.Hour, Firing}, {week + time.Minute, Resolved}} {
		e.eval(ev, c.at)
		for _, f := range []finding.Finding{leak, manual} {
			if a := e.alert(f.Fingerprint); a.State != c.want {
				t.Fatalf("at %s: %s %s, want %s", c.at, f.Detector, a.State, c.want)
			}
		}
	}
	if a := e.alert(other.Fingerprint); a.State != Firing {
		t.Fatalf("the later report: %s, want firing", a.State)
	}
}

// TestFindingsWindow: findings are read back only as far as their detector needs.
func TestFindingsWindow(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(7 * 24 * time.Hour), "lingering": config.Duration(time.Hour), `it's\odd`: 0}
	leak := newFinding("leak_report", "kid_live", "", "", finding.Critical)
	lingering := newFinding("lingering", "kid_old", "acme", "rot-1", finding.Warning)
	e.run("leak_report", 0, "", leak)
	e.run("lingering", 0, "", lingering)
	got, err := finding.NewStore(e.conn).Latest(context.Background(), e.evaluator().window(), t0.Add(3*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[leak.Fingerprint]; !ok || len(got) != 1 {
		t.Fatalf("read %v, want only the leak report (lingering reads 2h back)", got)
	}
}
