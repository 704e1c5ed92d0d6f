package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// SpikeEvidence is what a spike finding shows: the step, the client's failure rates in both windows
// against its baseline, and where the failures came from.
type SpikeEvidence struct {
	RotationID string            `json:"rotation_id"`
	OldKeyID   string            `json:"old_key_id"`
	NewKeyID   string            `json:"new_key_id"`
	Step       rotation.StepKind `json:"step"`
	StepAt     time.Time         `json:"step_at"`
	ClientID   string            `json:"client_id"`
	// RotationClient is true for the client whose keys rotate, false for another client calling them.
	RotationClient bool        `json:"rotation_client"`
	Short          SpikeWindow `json:"short_window"`
	Long           SpikeWindow `json:"long_window"`
	// SinceStep is from the step's minute to now: it carries a window that is thin (Carried).
	SinceStep SpikeWindow   `json:"since_step"`
	Baseline  SpikeBaseline `json:"baseline"`
	// FailuresByOutcome and FailuresByKey (the rotation's keys) break down the long window's
	// failures; keyless failures are under the key "" of FailuresByKey.
	FailuresByOutcome map[string]uint64 `json:"failures_by_outcome"`
	FailuresByKey     map[string]uint64 `json:"failures_by_key"`
	TopRoutes         []SpikeCount      `json:"top_routes"`
	// Callers and Addresses are the distinct (IP, user agent) pairs and addresses the long window's
	// failures with a client came from: how many hosts of a fleet the step broke.
	Callers   uint64       `json:"callers"`
	Addresses uint64       `json:"addresses"`
	Keyless   SpikeKeyless `json:"keyless"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

// SpikeWindow is one window after the step: [From, Until).
type SpikeWindow struct {
	From     time.Time `json:"from,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Requests uint64    `json:"requests"`
	Failures uint64    `json:"failures"`
	Rate     float64   `json:"rate"`
	Z        float64   `json:"z"` // binomial z-score of Rate against the baseline rate
	// P is the one-sided binomial p-value of Failures in Requests at the baseline rate: the
	// significance test (within that of detect.spike.min_z).
	P float64 `json:"p"`
	// Carried is true when the window held fewer than detect.spike.min_failures failures and the
	// window since the step was judged in its place.
	Carried bool `json:"carried_by_since_step,omitempty"`
}

// SpikeBaseline is the failure rate the windows are compared with: the higher of the rate before
// the step and, when there are enough requests, the rate at the same time of the week in earlier
// weeks (so a weekly pattern does not fire). z-scores floor it at 0.1%.
type SpikeBaseline struct {
	Rate           float64      `json:"rate"`
	Source         string       `json:"source"` // before_step or same_time_of_week
	BeforeStep     SpikeWindow  `json:"before_step"`
	SameTimeOfWeek *SpikeWindow `json:"same_time_of_week,omitempty"` // summed over the weeks; nil without enough requests
}

// SpikeCount is a failure count of one route or caller.
type SpikeCount struct {
	Name     string `json:"name"`
	Failures uint64 `json:"failures"`
}

// SpikeKeyless is the failures without a known key or client attributed to the client in the long
// window, and the (IP, user agent) pairs, seen with the rotation's keys before the step, they came from.
type SpikeKeyless struct {
	Failures uint64       `json:"failures"`
	Callers  []SpikeCount `json:"callers,omitempty"` // "ip user-agent"
}

// fields says a spike finding's evidence in words.
func (e SpikeEvidence) fields() finding.Fields {
	window := func(w SpikeWindow) string {
		s := fmt.Sprintf("%d of %d (%.2f%%, z %.1f)", w.Failures, w.Requests, 100*w.Rate, w.Z)
		if w.Carried {
			s += "; too few to judge: judged since the step"
		}
		return s
	}
	var l finding.Fields
	l.Add("Rotation", fmt.Sprintf("%s → %s, %s %s", e.OldKeyID, e.NewKeyID, e.Step, finding.Stamp(e.StepAt)))
	l.Add("Failures, short window", window(e.Short))
	l.Add("Failures, long window", window(e.Long))
	if e.Short.Carried || e.Long.Carried {
		l.Add("Failures since the step", window(e.SinceStep))
	}
	l.Add("Baseline", fmt.Sprintf("%.2f%% (%s)", 100*e.Baseline.Rate, e.Baseline.Source))
	l.Add("Failures by outcome", mapText(e.FailuresByOutcome))
	routes := make([]string, len(e.TopRoutes))
	for i, r := range e.TopRoutes {
		routes[i] = fmt.Sprintf("%s (%d)", r.Name, r.Failures)
	}
	l.Add("Top routes", strings.Join(routes, ", "))
	if e.Callers > 0 {
		l.Add("Callers", fmt.Sprintf("%d (%d addresses)", e.Callers, e.Addresses))
	}
	if e.Keyless.Failures > 0 {
		l.Add("Keyless failures", fmt.Sprint(e.Keyless.Failures))
	}
	return l
}
