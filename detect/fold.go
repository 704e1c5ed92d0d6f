package detect

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/keywatch/keywatch/finding"
)

// Caps on one detector run's findings, applied by the engine to every detector. What a detector
// finds follows what callers do, and some of that the callers choose (addresses, user agents):
// without a cap, a key tried in 5,000 ways could make 5,000 findings, alerts and Slack messages.
// Past a cap, the lowest-ranked findings (severity, then score) are folded into one finding of
// the same detector that says how many it stands for (see fold). The caps count that finding.
const (
	// MaxFindingsPerKey is how many findings one run reports about one key.
	MaxFindingsPerKey = 20
	// MaxFindingsPerRun is how many findings one run reports in all.
	MaxFindingsPerRun = 500
)

// folded is the client part of a folded finding's fingerprint (see Fingerprint): a run's folded
// finding about a key is Fingerprint(detector, key, folded, rotation) (the rotation its findings
// share, else ""), the one about the whole run Fingerprint(detector, "", folded, ""). They stay
// the same from run to run, so alerting follows them as it follows any finding.
const folded = "(folded)"

// foldable is evidence that can say how many findings the finding it belongs to stands for.
type foldable interface{ folded(n int) any }

func (e LingeringEvidence) folded(n int) any { e.FoldedFindings = n; return e }
func (e SpikeEvidence) folded(n int) any     { e.FoldedFindings = n; return e }
func (e LeakEvidence) folded(n int) any      { e.FoldedFindings = n; return e }
func (e HygieneEvidence) folded(n int) any   { e.FoldedFindings = n; return e }

// FoldedEvidence is the evidence of a folded finding when its detector's evidence cannot hold the
// count itself: the first folded finding's evidence, and how many findings were folded.
type FoldedEvidence struct {
	FoldedFindings int `json:"folded_findings"`
	First          any `json:"first"`
}

// ranked is a finding and how many findings it stands for (more than 1 once folded), with the
// first of them (itself when not folded).
type ranked struct {
	finding.Finding
	n     int
	first finding.Finding
}

// rank orders findings most urgent first: severity, score, then fingerprint (so the order, and
// which findings a cap keeps, does not change from run to run for the same findings).
func rank(a, b finding.Finding) int {
	return cmp.Or(cmp.Compare(b.Severity, a.Severity), cmp.Compare(b.Score, a.Score), cmp.Compare(a.Fingerprint, b.Fingerprint))
}

// capFindings sorts fs by rank and keeps at most perKey findings about a key and perRun in all
// (both at least 2): past a cap, the kept ones are the highest-ranked, and the rest become one
// folded finding per key, then one for the run.
func capFindings(fs []finding.Finding, perKey, perRun int) []finding.Finding {
	slices.SortFunc(fs, rank)
	if len(fs) <= min(perKey, perRun) {
		return fs
	}
	byKey := map[string]int{}
	for _, f := range fs {
		byKey[f.KeyID]++
	}
	var items []ranked
	excess := map[string][]ranked{}
	seen := map[string]int{}
	for _, f := range fs {
		seen[f.KeyID]++
		r := ranked{Finding: f, n: 1, first: f}
		if byKey[f.KeyID] > perKey && seen[f.KeyID] >= perKey {
			excess[f.KeyID] = append(excess[f.KeyID], r)
			continue
		}
		items = append(items, r)
	}
	for key, rs := range excess {
		f := fold(rs)
		f.Fingerprint = finding.Fingerprint(f.Detector, key, folded, f.RotationID)
		f.Summary = fmt.Sprintf("%d %s findings about %s folded into one (a run reports at most %d about a key); the first: %s",
			f.n, f.Detector, key, perKey, f.first.Summary)
		items = append(items, f)
	}
	slices.SortFunc(items, func(a, b ranked) int { return rank(a.Finding, b.Finding) })
	if len(items) > perRun {
		rest := items[perRun-1:]
		f := fold(rest)
		keys := map[string]bool{}
		for _, r := range rest {
			keys[r.KeyID] = true
		}
		f.KeyID = ""
		f.Fingerprint = finding.Fingerprint(f.Detector, "", folded, "")
		f.Summary = fmt.Sprintf("%d %s findings about %d keys folded into one (a run reports at most %d); the first: %s",
			f.n, f.Detector, len(keys), perRun, f.first.Summary)
		items = append(items[:perRun-1], f)
	}
	out := make([]finding.Finding, len(items))
	for i, r := range items {
		out[i] = r.Finding
	}
	return out
}

// fold returns one finding standing for rs (ranked, most urgent first): the first one's detector,
// key, severity, score, time, evidence and fields, with the count of findings in the evidence and
// as the first field (FieldFoldedFindings); the client, rotation and labels they all share, if any. Its caller sets its fingerprint and summary.
func fold(rs []ranked) ranked {
	out := ranked{first: rs[0].first}
	f := rs[0].first
	f.Labels = maps.Clone(f.Labels)
	for _, r := range rs {
		out.n += r.n
		if r.ClientID != f.ClientID {
			f.ClientID = ""
		}
		if r.RotationID != f.RotationID {
			f.RotationID = ""
		}
		for k, v := range f.Labels {
			if r.Labels[k] != v {
				delete(f.Labels, k)
			}
		}
	}
	if len(f.Labels) == 0 {
		f.Labels = nil
	}
	switch ev := f.Evidence.(type) {
	case foldable:
		f.Evidence = ev.folded(out.n)
	default:
		f.Evidence = FoldedEvidence{FoldedFindings: out.n, First: ev}
	}
	f.Fields = append([]finding.Field{{Name: FieldFoldedFindings, Value: strconv.Itoa(out.n)}}, f.Fields...)
	out.Finding = f
	return out
}
