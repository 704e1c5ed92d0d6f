package alerting

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// observed keeps what each pass told it.
type observed struct {
	passes [][]Alert
	at     []time.Time
}

func (o *observed) Observe(_ context.Context, alerts []Alert, now time.Time) {
	o.passes = append(o.passes, alerts)
	o.at = append(o.at, now)
}

// Observers are told every alert after each pass, sorted by fingerprint: pending, firing, muted and
// recently resolved ones, as the pass stored them.
func TestObserversAreToldEveryAlertAfterEachPass(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": 0}
	e.cfg.For = map[string]config.Duration{"default": 0, "spike": config.Duration(time.Hour)}
	obs := &observed{}
	ev := e.evaluator().WithObservers(obs)

	keyWide := newFinding("leak", "kid_a", "", "", finding.Critical)
	inhibited := newFinding("lingering", "kid_a", "acme", "rot-1", finding.Warning) // by the built-in rule
	resolved := newFinding("lingering", "kid_b", "acme", "rot-2", finding.Warning)
	pending := newFinding("spike", "kid_c", "acme", "rot-3", finding.Warning)
	e.run("leak", 0, "", keyWide)
	e.run("lingering", 0, "", inhibited, resolved)
	e.run("spike", 0, "", pending)
	e.eval(ev, time.Minute)
	e.run("lingering", 2*time.Minute, "", inhibited) // resolved is not found again
	e.eval(ev, 3*time.Minute)

	if len(obs.passes) != 2 || !obs.at[1].Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("observer told of %d passes at %v, want 2, the last at %v", len(obs.passes), obs.at, t0.Add(3*time.Minute))
	}
	var got []string
	for _, a := range obs.passes[1] {
		got = append(got, a.Fingerprint+" "+string(a.State)+" inhibited:"+a.Inhibited)
	}
	want := []string{
		keyWide.Fingerprint + " firing inhibited:",
		inhibited.Fingerprint + " firing inhibited:" + keyWide.Fingerprint,
		resolved.Fingerprint + " resolved inhibited:",
		pending.Fingerprint + " pending inhibited:",
	}
	slices.Sort(want) // by fingerprint
	if !slices.Equal(got, want) {
		t.Errorf("the last pass told\n%v\nwant\n%v", got, want)
	}
}
