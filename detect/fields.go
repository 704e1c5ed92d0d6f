package detect

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// Display fields: each detector's evidence says itself in words (finding.Field), in the order a
// person on call reads it, after the identity (key, client, rotation) that every finding shows.
// Values are plain text; each output escapes and formats them for its medium.

// fieldList collects display fields, leaving out empty values as finding.AddField does.
type fieldList []finding.Field

func (l *fieldList) add(name, value string) {
	if value != "" {
		*l = append(*l, finding.Field{Name: name, Value: value})
	}
}

// FieldFoldedFindings is the display field of a folded finding: how many findings it stands for.
const FieldFoldedFindings = "Findings folded in"

// stamp writes a time to the minute in UTC; the zero time as nothing.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// countsText writes counts as "value (requests), ...".
func countsText(cs []Count) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (%d)", c.Value, c.Requests)
	}
	return strings.Join(parts, ", ")
}

// mapText writes counts by name as "name n, ...", in name order; an empty name is "(none)".
func mapText(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %d", name, m[k])
	}
	return strings.Join(parts, ", ")
}

// fields says a lingering finding's evidence in words.
func (e LingeringEvidence) fields() []finding.Field {
	c := e.Caller
	caller := c.ClientID
	if caller == "" {
		caller = strings.TrimSpace(c.IP + " " + c.UserAgent)
	}
	if caller == "" && e.Callers > 0 {
		caller = "callers without a client" // the finding about a rotation's callers without a client sums several
	}
	var l fieldList
	l.add("Rotation", fmt.Sprintf("%s → %s (%s)", e.OldKeyID, e.NewKeyID, e.Step))
	l.add("Caller", caller)
	if e.Callers > 0 {
		l.add("Callers without a client", fmt.Sprintf("%d (%d addresses, %d user agents)", e.Callers, e.Addresses, e.UserAgents))
	}
	l.add("Requests on old key", fmt.Sprintf("%d (%d failed) since %s", c.Requests, c.Failures, stamp(e.Since)))
	l.add("First / last seen", stamp(c.FirstSeen)+" / "+stamp(c.LastSeen))
	l.add("On new key", fmt.Sprintf("%.0f%% (%d requests)", 100*c.NewKeyShare, c.NewKeyRequests))
	if e.Deadline != nil {
		l.add("Deadline", stamp(*e.Deadline)+" ("+e.TimeLeft+" left)")
	}
	l.add("Top addresses", countsText(c.TopIPs))
	l.add("Top user agents", countsText(c.TopUserAgents))
	return l
}

// fields says a spike finding's evidence in words.
func (e SpikeEvidence) fields() []finding.Field {
	window := func(w SpikeWindow) string {
		return fmt.Sprintf("%d of %d (%.2f%%, z %.1f)", w.Failures, w.Requests, 100*w.Rate, w.Z)
	}
	var l fieldList
	l.add("Rotation", fmt.Sprintf("%s → %s, %s %s", e.OldKeyID, e.NewKeyID, e.Step, stamp(e.StepAt)))
	l.add("Failures, short window", window(e.Short))
	l.add("Failures, long window", window(e.Long))
	l.add("Baseline", fmt.Sprintf("%.2f%% (%s)", 100*e.Baseline.Rate, e.Baseline.Source))
	l.add("Failures by outcome", mapText(e.FailuresByOutcome))
	routes := make([]string, len(e.TopRoutes))
	for i, r := range e.TopRoutes {
		routes[i] = fmt.Sprintf("%s (%d)", r.Name, r.Failures)
	}
	l.add("Top routes", strings.Join(routes, ", "))
	if e.Keyless.Failures > 0 {
		l.add("Keyless failures", fmt.Sprint(e.Keyless.Failures))
	}
	return l
}

// fields says a hygiene finding's evidence in words.
func (e HygieneEvidence) fields() []finding.Field {
	age := fmt.Sprintf("%.0f days (limit %.0f)", e.AgeDays, e.LimitDays)
	if e.ExpiresAt != nil {
		age = fmt.Sprintf("%.0f days", e.AgeDays)
	}
	var l fieldList
	l.add("Problem", strings.ReplaceAll(e.Kind, "_", " "))
	l.add("Key state", e.State)
	l.add("Age", age)
	l.add("Requests", fmt.Sprint(e.Requests))
	if e.ExpiresAt != nil {
		left := fmt.Sprintf("%.1f days left", e.DaysLeft)
		if e.DaysLeft < 0 {
			left = fmt.Sprintf("expired %.1f days ago", -e.DaysLeft)
		}
		l.add("Expires", fmt.Sprintf("%s (%s; reported within %.0f days)", stamp(*e.ExpiresAt), left, e.LimitDays))
	}
	if e.LastUsed.IsZero() {
		l.add("Last used", "never")
	} else {
		l.add("Last used", stamp(e.LastUsed))
	}
	if e.UnusedDays > 0 {
		l.add("Unused for", fmt.Sprintf("%.0f days", e.UnusedDays))
	}
	return l
}
