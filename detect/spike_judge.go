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
	sinceStep                                 spikeTally // from the step's minute to now; carries a thin window
	byOutcome, byKey                          map[string]uint64
	keylessRoutes, keylessCallers             map[string]uint64
	keylessFailures                           uint64
	callers, addresses                        uint64 // distinct, of the long window's failures with a client
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
	return later(stepMinute, now.Add(-time.Duration(d.cfg.ShortWindow)).Truncate(time.Minute)),
		later(stepMinute, now.Add(-time.Duration(d.cfg.LongWindow)).Truncate(time.Minute))
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
// at spikeMinRate. It is shown and scored; whether a window is significant is spikeP's answer, exact
// where the normal approximation behind z overstates a handful of requests.
func spikeZ(t spikeTally, p0 float64) float64 {
	p0 = max(p0, spikeMinRate)
	if t.requests == 0 || p0 >= 1 {
		return 0
	}
	return (t.rate() - p0) / math.Sqrt(p0*(1-p0)/float64(t.requests))
}

// spikeP is the one-sided binomial p-value of a window: the chance of at least its failures among
// its requests if each failed at the baseline rate p0 (floored at spikeMinRate). 1 when the window
// does not fail more than the baseline expects.
func spikeP(t spikeTally, p0 float64) float64 {
	p0 = max(p0, spikeMinRate)
	n, k := t.requests, t.failures
	if k == 0 || p0 >= 1 || float64(k) <= float64(n)*p0 {
		return 1
	}
	lp, lq := math.Log(p0), math.Log1p(-p0)
	lgN, _ := math.Lgamma(float64(n) + 1)
	logTerm := func(i uint64) float64 { // log P(X = i)
		a, _ := math.Lgamma(float64(i) + 1)
		b, _ := math.Lgamma(float64(n-i) + 1)
		return lgN - a - b + float64(i)*lp + float64(n-i)*lq
	}
	// The terms from k on fall geometrically (k is above the mean): sum them relative to the first
	// until they stop mattering.
	first, sum := logTerm(k), 0.0
	for i := k; i <= n; i++ {
		r := math.Exp(logTerm(i) - first)
		sum += r
		if r < spikeTailPrecision*sum {
			break
		}
	}
	return min(1, math.Exp(first)*sum)
}

// spikeAlpha is the one-sided p-value a window must reach: that of a z-score of z in the normal
// distribution (4: 3.2e-5), so that min_z keeps its meaning.
func spikeAlpha(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// judged returns the tally a window is judged by: its own, or, when it holds fewer than
// MinFailures failures (thin: a client with few requests), the window since the step, which carries
// the count; carried says which.
func (d *Spike) judged(w, since spikeTally) (t spikeTally, carried bool) {
	if w.failures >= uint64(d.cfg.MinFailures) {
		return w, false
	}
	return since, true
}

// rises reports whether window w shows a rise against the baseline rate p0: the tally it is judged
// by (judged) has at least MinFailures failures, MinRate, and, when significance is tested, a
// p-value within spikeAlpha(MinZ). A thin window whose own requests mostly succeeded says the
// client works again and never rises; a thin window without requests leaves it to the step's.
func (d *Spike) rises(w, since spikeTally, p0 float64, significance bool) bool {
	if w.requests > 0 && w.rate() < d.cfg.MinRate {
		return false
	}
	t, _ := d.judged(w, since)
	return t.failures >= uint64(d.cfg.MinFailures) && t.rate() >= d.cfg.MinRate &&
		(!significance || spikeP(t, p0) <= spikeAlpha(d.cfg.MinZ))
}

// fires reports whether both windows show a rise that is large and significant.
func (d *Spike) fires(c *spikeCase) bool {
	p0, _ := d.baseline(c)
	return d.rises(c.shortWin, c.sinceStep, p0, true) && d.rises(c.longWin, c.sinceStep, p0, true)
}

// finding builds the finding of a case that fires. Severity is critical when at least half of the
// long window's requests failed or revoked keys are the most common failure (a client cut off by
// a revocation), warning otherwise. Score is the long window's z-score.
func (d *Spike) finding(c *spikeCase, routes []SpikeCount, now time.Time) finding.Finding {
	p0, source := d.baseline(c)
	window := func(from time.Time, t spikeTally) SpikeWindow {
		return SpikeWindow{From: from, Until: now, Requests: t.requests, Failures: t.failures, Rate: t.rate(), Z: spikeZ(t, p0), P: spikeP(t, p0)}
	}
	ev := SpikeEvidence{
		RotationID: c.rot.ID, OldKeyID: c.rot.OldKeyID, NewKeyID: c.rot.NewKeyID, Step: c.step.Kind, StepAt: c.step.At,
		ClientID: c.client, RotationClient: c.client == c.rot.ClientID,
		Short: window(c.shortFrom, c.shortWin), Long: window(c.longFrom, c.longWin), SinceStep: window(c.stepMinute, c.sinceStep),
		Baseline: SpikeBaseline{Rate: p0, Source: source, BeforeStep: SpikeWindow{
			From: c.baseFrom, Until: c.stepMinute, Requests: c.base.requests, Failures: c.base.failures, Rate: c.base.rate(),
		}},
		FailuresByOutcome: c.byOutcome, FailuresByKey: c.byKey, TopRoutes: routes, Callers: c.callers, Addresses: c.addresses,
		Keyless: SpikeKeyless{Failures: c.keylessFailures, Callers: spikeTopCounts(c.keylessCallers)},
	}
	_, ev.Short.Carried = d.judged(c.shortWin, c.sinceStep)
	_, ev.Long.Carried = d.judged(c.longWin, c.sinceStep)
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
	// The summary tells the long window, or the window since the step when that carried it.
	told, toldFrom := ev.Long, c.longFrom
	if ev.Long.Carried {
		told, toldFrom = ev.SinceStep, c.stepMinute
	}
	f.Summary = fmt.Sprintf("%s: %.0f%% of %d requests failed in the last %s (usually %.1f%%) after %s %s ago; mostly %s",
		c.client, 100*told.Rate, told.Requests, spikeDuration(now.Sub(toldFrom)), 100*p0, step, spikeDuration(now.Sub(c.step.At)), top)
	if len(routes) > 0 {
		f.Summary += " on " + routes[0].Name
	}
	if c.callers > 1 {
		f.Summary += fmt.Sprintf(", from %d callers (%d addresses)", c.callers, c.addresses)
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
