package detect

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// spikeCase is one step × affected client, with the counts gathered for it.
type spikeCase struct {
	rot                                       *rotation.Rotation
	step                                      rotation.Step
	client                                    string
	baseFrom, stepMinute, shortFrom, longFrom time.Time
	base, sameHour, shortWin, longWin         spikeTally
	byOutcome, byKey                          map[string]uint64
	keylessRoutes, keylessCallers             map[string]uint64
	keylessFailures                           uint64
}

type spikeTally struct{ requests, failures uint64 }

func (t *spikeTally) add(requests uint64, failed bool) {
	t.requests += requests
	if failed {
		t.failures += requests
	}
}

func (t spikeTally) rate() float64 {
	if t.requests == 0 {
		return 0
	}
	return float64(t.failures) / float64(t.requests)
}

// windowStarts returns where the short and long windows after a step start: ShortWindow and
// LongWindow before now, but not before the step's minute.
func (d *Spike) windowStarts(stepMinute, now time.Time) (short, long time.Time) {
	return spikeLater(stepMinute, now.Add(-time.Duration(d.cfg.ShortWindow)).Truncate(time.Minute)),
		spikeLater(stepMinute, now.Add(-time.Duration(d.cfg.LongWindow)).Truncate(time.Minute))
}

// baseline returns the failure rate a case's windows are compared with, and where it came from.
func (d *Spike) baseline(c *spikeCase) (float64, string) {
	p0, source := c.base.rate(), "before_step"
	if c.sameHour.requests >= spikeSameHourRequests && c.sameHour.rate() > p0 {
		p0, source = c.sameHour.rate(), "same_time_of_week"
	}
	return p0, source
}

// spikeZ is the binomial z-score of a window's failure rate against the baseline rate p0, floored
// at spikeMinRate.
func spikeZ(t spikeTally, p0 float64) float64 {
	p0 = max(p0, spikeMinRate)
	if t.requests == 0 || p0 >= 1 {
		return 0
	}
	return (t.rate() - p0) / math.Sqrt(p0*(1-p0)/float64(t.requests))
}

// large reports whether a window has at least MinFailures failures and MinRate.
func (d *Spike) large(w spikeTally) bool {
	return w.failures >= uint64(d.cfg.MinFailures) && w.rate() >= d.cfg.MinRate
}

// fires reports whether both windows show a rise that is large and significant.
func (d *Spike) fires(c *spikeCase) bool {
	p0, _ := d.baseline(c)
	return d.large(c.shortWin) && d.large(c.longWin) && spikeZ(c.shortWin, p0) >= d.cfg.MinZ && spikeZ(c.longWin, p0) >= d.cfg.MinZ
}

// finding builds the finding of a case that fires. Severity is critical when at least half of the
// long window's requests failed or revoked keys are the most common failure (a client cut off by
// a revocation), warning otherwise. Score is the long window's z-score.
func (d *Spike) finding(c *spikeCase, routes []SpikeCount, now time.Time) finding.Finding {
	p0, source := d.baseline(c)
	window := func(from time.Time, t spikeTally) SpikeWindow {
		return SpikeWindow{From: from, Until: now, Requests: t.requests, Failures: t.failures, Rate: t.rate(), Z: spikeZ(t, p0)}
	}
	ev := SpikeEvidence{
		RotationID: c.rot.ID, OldKeyID: c.rot.OldKeyID, NewKeyID: c.rot.NewKeyID, Step: c.step.Kind, StepAt: c.step.At,
		ClientID: c.client, RotationClient: c.client == c.rot.ClientID,
		Short: window(c.shortFrom, c.shortWin), Long: window(c.longFrom, c.longWin),
		Baseline: SpikeBaseline{Rate: p0, Source: source, BeforeStep: SpikeWindow{
			From: c.baseFrom, Until: c.stepMinute, Requests: c.base.requests, Failures: c.base.failures, Rate: c.base.rate(),
		}},
		FailuresByOutcome: c.byOutcome, FailuresByKey: c.byKey, TopRoutes: routes,
		Keyless: SpikeKeyless{Failures: c.keylessFailures, Callers: spikeTopCounts(c.keylessCallers)},
	}
	if c.sameHour.requests >= spikeSameHourRequests {
		ev.Baseline.SameTimeOfWeek = &SpikeWindow{Requests: c.sameHour.requests, Failures: c.sameHour.failures, Rate: c.sameHour.rate()}
	}
	top := spikeTopCounts(c.byOutcome)[0].Name
	f := finding.New(d.Name(), now, c.rot.OldKeyID, c.client, c.rot.ID)
	f.Severity = finding.Warning
	if ev.Long.Rate >= 0.5 || top == "revoked_key" {
		f.Severity = finding.Critical
	}
	f.Score = ev.Long.Z
	step := fmt.Sprintf("%s was %s", c.rot.OldKeyID, c.step.Kind)
	if c.step.Kind == rotation.StepStarted {
		step = "rotation " + c.rot.ID + " started"
	}
	f.Summary = fmt.Sprintf("%s: %.0f%% of %d requests failed in the last %s (usually %.1f%%) after %s %s ago; mostly %s",
		c.client, 100*ev.Long.Rate, ev.Long.Requests, spikeDuration(now.Sub(c.longFrom)), 100*p0, step, spikeDuration(now.Sub(c.step.At)), top)
	if len(routes) > 0 {
		f.Summary += " on " + routes[0].Name
	}
	if c.keylessFailures > 0 {
		f.Summary += fmt.Sprintf("; %d without a known key from its usual callers", c.keylessFailures)
	}
	f.Evidence, f.Fields = ev, ev.fields()
	f.Labels = map[string]string{finding.LabelStep: string(c.step.Kind)}
	return f
}

// spikeTopCounts returns the spikeTop largest counts, largest first.
func spikeTopCounts(m map[string]uint64) []SpikeCount {
	out := make([]SpikeCount, 0, len(m))
	for name, n := range m {
		out = append(out, SpikeCount{name, n})
	}
	slices.SortFunc(out, func(a, b SpikeCount) int {
		return cmp.Or(cmp.Compare(b.Failures, a.Failures), strings.Compare(a.Name, b.Name))
	})
	return out[:min(len(out), spikeTop)]
}

func spikeIsFailure(outcome string) bool {
	return strings.Contains(spikeFailures, "'"+outcome+"'")
}

func spikeDuration(d time.Duration) string {
	if d < time.Hour {
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	}
	return fmt.Sprintf("%.1fh", d.Hours())
}

func spikeUniq(s []string) []string { return slices.Compact(slices.Sorted(slices.Values(s))) }

func spikeLater(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
