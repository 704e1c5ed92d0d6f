package alerting

import (
	"slices"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/label"
)

// LabelSet is what selectors (routes, silences, inhibit rules, policies) match an alert by:
// detector, severity, key_id, client_id, rotation_id and the labels its detector gave the finding
// (e.g. step), which selectors may name (config.MatcherLabels).
func LabelSet(a Alert) label.Set {
	return finding.LabelsOf(a.Detector, a.Severity, a.KeyID, a.ClientID, a.RotationID, a.Labels)
}

// mute sets Silenced and Inhibited on the open alerts; resolved alerts keep what they had.
func (e *Evaluator) mute(next map[string]*stored, silences []Silence) {
	all := sortedAlerts(next)
	var sources []stored
	for _, a := range all {
		if a.State == Firing {
			sources = append(sources, a)
		}
	}
	// The most severe source names the inhibition, then the lowest fingerprint: stable per pass.
	slices.SortStableFunc(sources, func(a, b stored) int { return int(b.Severity) - int(a.Severity) })
	rules := make([]inhibitRule, len(e.cfg.Inhibit))
	for i, r := range e.cfg.Inhibit {
		rules[i] = inhibitRule{source: r.SourceSelector(), target: r.TargetSelector(), equal: r.Equal}
	}
	for _, c := range all {
		if c.State == Resolved {
			continue
		}
		a := next[c.Fingerprint]
		l := LabelSet(a.Alert)
		a.Silenced = ""
		for _, s := range silences {
			if s.matches(l) {
				a.Silenced = s.ID
				break
			}
		}
		a.Inhibited = inhibitor(a.Alert, l, sources, rules)
	}
}

// inhibitRule is an alerting.inhibit rule with its selectors.
type inhibitRule struct {
	source, target label.Matchers
	equal          []string
}

// inhibitor returns the fingerprint of the firing alert that mutes a, if any: a configured rule,
// or the built-in one (a key-wide alert mutes the per-client alerts of its key that are not more
// severe). An alert never mutes itself.
func inhibitor(a Alert, l label.Set, sources []stored, rules []inhibitRule) string {
	for _, src := range sources {
		if src.Fingerprint == a.Fingerprint {
			continue
		}
		sl := LabelSet(src.Alert)
		for _, r := range rules {
			if !r.source.Matches(sl) || !r.target.Matches(l) {
				continue
			}
			equal := true
			for _, name := range r.equal {
				equal = equal && sl[name] == l[name]
			}
			if equal {
				return src.Fingerprint
			}
		}
		if src.KeyID != "" && src.ClientID == "" && src.RotationID == "" && src.KeyID == a.KeyID && a.ClientID != "" &&
			src.Severity >= a.Severity {
			return src.Fingerprint
		}
	}
	return ""
}
