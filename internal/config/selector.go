package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keywatch/keywatch/internal/glob"
	"github.com/keywatch/keywatch/label"
)

// Every selector of the configuration is written in the forms package label reads and compiled
// to label.Matchers when the configuration is loaded, each error naming its field: silences (the
// map form, label: glob), inhibit rules (source and target in the map form, source_matchers and
// target_matchers in the string form), slack.routes (severity, detector and client lists, and
// matchers), revoke.policies (detector and keys, and matchers), revoke.protected_keys (key_id
// globs), rollback.policies (rotation and clients, and matchers) and rollback.critical_clients
// (client_id globs). The string form is label="glob", label!="glob", label=~"regexp" and
// label!~"regexp", on the labels of MatcherLabels.
//
// The accessors (Selector, SourceSelector, TargetSelector, Routing, Protected, Critical) return
// what Load compiled; a value built or changed by hand after Load, as tests and the demo do, is
// compiled when read, and panics there if invalid, since only Load reports errors.

// compiled is a selector compiled from its written form, from: it serves while the written form
// is unchanged.
type compiled struct {
	from string
	ms   []label.Matchers
}

// cached returns c's matchers if c was compiled from from, else compiles them.
func cached(c *compiled, from string, compile func() ([]label.Matchers, []error)) []label.Matchers {
	if c != nil && c.from == from {
		return c.ms
	}
	ms, errs := compile()
	if len(errs) > 0 {
		panic(fmt.Sprintf("config: selector %s is invalid (Load reports it): %v", from, errs))
	}
	return ms
}

// store compiles the written form from and keeps it in *c, or returns what is wrong with it.
func store(c **compiled, from string, compile func() ([]label.Matchers, []error)) []error {
	ms, errs := compile()
	if len(errs) == 0 {
		*c = &compiled{from: from, ms: ms}
	}
	return errs
}

func one(ms label.Matchers) []label.Matchers { return []label.Matchers{ms} }

func first(list []label.Matchers) label.Matchers {
	if len(list) == 0 {
		return nil
	}
	return list[0]
}

// knownLabel checks that a matcher selects by a label alerts and findings have.
func knownLabel(path, name string) error {
	if !slices.Contains(MatcherLabels, name) {
		return fmt.Errorf("%s: no such label %q (want %s)", path, name, strings.Join(MatcherLabels, ", "))
	}
	return nil
}

// parse reads the string-form matchers texts at path (e.g. slack.routes[0].matchers).
func parse(path string, texts []string) (label.Matchers, []error) {
	var out label.Matchers
	var errs []error
	for i, s := range texts {
		p := fmt.Sprintf("%s[%d]", path, i)
		m, err := label.ParseMatcher(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if err := knownLabel(p, m.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, m)
	}
	return out, errs
}

// globs is a matcher of name for any of patterns (label.AnyOf), each checked at path[i].
func globs(path, name string, patterns []string) (*label.Matcher, []error) {
	var errs []error
	for i, g := range patterns {
		if err := glob.Valid(g); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %v", path, i, err))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	m, err := label.AnyOf(name, patterns)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %v", path, err)}
	}
	return m, nil
}

// optional is a policy's optional glob field at path: empty selects anything.
func optional(path, name, pattern string) (*label.Matcher, []error) {
	if pattern == "" {
		return nil, nil
	}
	m, err := label.NewMatcher(label.Equal, name, pattern)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %v", path, err)}
	}
	return m, nil
}

// selector joins the matchers of a written form; nil ones (fields left empty) select anything.
func selector(ms ...*label.Matcher) label.Matchers {
	var out label.Matchers
	for _, m := range ms {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

// compile checks the map form at path (e.g. alerting.silences[0].matchers): each label is one
// alerts have and each value a glob.
func (m Matcher) compile(path string) (label.Matchers, []error) {
	var errs []error
	for _, l := range slices.Sorted(mapKeys(m)) {
		if err := knownLabel(path+"."+l, l); err != nil {
			errs = append(errs, err)
		}
		if err := glob.Valid(m[l]); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %v", path, l, err))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	ms, err := label.FromMap(m)
	if err != nil {
		return nil, []error{fmt.Errorf("%s.%v", path, err)}
	}
	return ms, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Compile returns the matchers of the map form; an error names the first bad label. For
// matchers from outside the file (POST /v1/silences), once Silence.Validate accepted them.
func (m Matcher) Compile() (label.Matchers, error) {
	ms, errs := m.compile("matchers")
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return ms, nil
}

func (m Matcher) from() string { return m.text() }

// side compiles one side of an inhibit rule at path (alerting.inhibit[i]): the map form under
// name (source, target) and the string form under name_matchers.
func side(path, name string, m Matcher, texts []string) (label.Matchers, []error) {
	ms, errs := m.compile(path + "." + name)
	more, e := parse(path+"."+name+"_matchers", texts)
	return append(ms, more...), append(errs, e...)
}

func sideFrom(m Matcher, texts []string) string { return fmt.Sprintf("%s %q", m.from(), texts) }

// SourceSelector selects the alerts that mute: Source and SourceMatchers, compiled.
func (r InhibitRule) SourceSelector() label.Matchers {
	return first(cached(r.source, sideFrom(r.Source, r.SourceMatchers), func() ([]label.Matchers, []error) {
		ms, errs := side("inhibit rule", "source", r.Source, r.SourceMatchers)
		return one(ms), errs
	}))
}

// TargetSelector selects the alerts that are muted: Target and TargetMatchers, compiled.
func (r InhibitRule) TargetSelector() label.Matchers {
	return first(cached(r.target, sideFrom(r.Target, r.TargetMatchers), func() ([]label.Matchers, []error) {
		ms, errs := side("inhibit rule", "target", r.Target, r.TargetMatchers)
		return one(ms), errs
	}))
}

// Selector selects the alerts the silence mutes: Matchers, compiled.
func (s Silence) Selector() label.Matchers {
	return first(cached(s.selector, s.Matchers.from(), func() ([]label.Matchers, []error) {
		ms, errs := s.Matchers.compile("matchers")
		return one(ms), errs
	}))
}

func (r SlackRoute) from() string {
	return fmt.Sprintf("%q %q %q %q", r.Severity, r.Detector, r.Client, r.Matchers)
}

// compile reads the route at path (slack.routes[i]): severity, detector (globs) and client (globs,
// of client_id) each select when given, and so does every matcher.
func (r SlackRoute) compile(path string) (label.Matchers, []error) {
	var errs []error
	for _, sev := range r.Severity {
		if !contains([]string{"info", "warning", "critical"}, sev) {
			errs = append(errs, fmt.Errorf("%s.severity: %q: want info, warning or critical", path, sev))
		}
	}
	var sev *label.Matcher
	if len(errs) == 0 {
		sev, errs = globs(path+".severity", "severity", r.Severity)
	}
	det, e := globs(path+".detector", "detector", r.Detector)
	errs = append(errs, e...)
	client, e := globs(path+".client", "client_id", r.Client)
	errs = append(errs, e...)
	more, e := parse(path+".matchers", r.Matchers)
	errs = append(errs, e...)
	if len(errs) > 0 {
		return nil, errs
	}
	return append(selector(sev, det, client), more...), nil
}

// Selector selects what the route sends to its channel.
func (r SlackRoute) Selector() label.Matchers {
	return first(cached(r.selector, r.from(), func() ([]label.Matchers, []error) {
		ms, errs := r.compile("route")
		return one(ms), errs
	}))
}

// Routing is slack.routes compiled, in order, for the route walk (label.Routes.Match).
func (s Slack) Routing() label.Routes {
	out := make(label.Routes, len(s.Routes))
	for i, r := range s.Routes {
		out[i] = label.Route{Matchers: r.Selector(), Channel: r.Channel, Continue: r.Continue}
	}
	return out
}

func (p RevokePolicy) from() string { return fmt.Sprintf("%q %q %q", p.Detector, p.Keys, p.Matchers) }

func (p RevokePolicy) compile(path string) (label.Matchers, []error) {
	det, errs := optional(path+".detector", "detector", p.Detector)
	keys, e := optional(path+".keys", "key_id", p.Keys)
	errs = append(errs, e...)
	more, e := parse(path+".matchers", p.Matchers)
	errs = append(errs, e...)
	if len(errs) > 0 {
		return nil, errs
	}
	return append(selector(det, keys), more...), nil
}

// Selector selects the alerts the policy applies to: detector and keys when given, and matchers.
func (p RevokePolicy) Selector() label.Matchers {
	return first(cached(p.selector, p.from(), func() ([]label.Matchers, []error) {
		ms, errs := p.compile("policy")
		return one(ms), errs
	}))
}

// keyMatchers is a list of globs of one label, each its own selector (path[i]).
func keyMatchers(path, name string, patterns []string) ([]label.Matchers, []error) {
	var out []label.Matchers
	var errs []error
	for i, g := range patterns {
		m, err := label.NewMatcher(label.Equal, name, g)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %v", path, i, err))
			continue
		}
		out = append(out, label.Matchers{m})
	}
	return out, errs
}

// Protected selects the keys that are never revoked: one key_id matcher per protected_keys entry,
// any of which protects a key.
func (r Revoke) Protected() []label.Matchers {
	return cached(r.protected, fmt.Sprintf("%q", r.ProtectedKeys), func() ([]label.Matchers, []error) {
		return keyMatchers("revoke.protected_keys", "key_id", r.ProtectedKeys)
	})
}

func (p RollbackPolicy) from() string {
	return fmt.Sprintf("%q %q %q", p.Rotation, p.Clients, p.Matchers)
}

func (p RollbackPolicy) compile(path string) (label.Matchers, []error) {
	rot, errs := optional(path+".rotation", "rotation_id", p.Rotation)
	clients, e := optional(path+".clients", "client_id", p.Clients)
	errs = append(errs, e...)
	more, e := parse(path+".matchers", p.Matchers)
	errs = append(errs, e...)
	if len(errs) > 0 {
		return nil, errs
	}
	return append(selector(rot, clients), more...), nil
}

// Selector selects the spikes the policy applies to: rotation and clients when given, and
// matchers.
func (p RollbackPolicy) Selector() label.Matchers {
	return first(cached(p.selector, p.from(), func() ([]label.Matchers, []error) {
		ms, errs := p.compile("policy")
		return one(ms), errs
	}))
}

// Critical selects the clients whose rollbacks may run without approval: one client_id matcher
// per critical_clients entry, any of which makes a client critical.
func (r Rollback) Critical() []label.Matchers {
	return cached(r.critical, fmt.Sprintf("%q", r.CriticalClients), func() ([]label.Matchers, []error) {
		return keyMatchers("rollback.critical_clients", "client_id", r.CriticalClients)
	})
}

// compileSelectors compiles every selector of c once, keeping the result for the accessors, and
// returns what is wrong with them, each error naming its field. The file's silences are checked
// by Silence.Validate, as those of POST /v1/silences are.
func (c *Config) compileSelectors() []error {
	var errs []error
	a := &c.Alerting
	for i := range a.Inhibit {
		r := &a.Inhibit[i]
		p := fmt.Sprintf("alerting.inhibit[%d]", i)
		errs = append(errs, store(&r.source, sideFrom(r.Source, r.SourceMatchers), func() ([]label.Matchers, []error) {
			ms, errs := side(p, "source", r.Source, r.SourceMatchers)
			return one(ms), errs
		})...)
		errs = append(errs, store(&r.target, sideFrom(r.Target, r.TargetMatchers), func() ([]label.Matchers, []error) {
			ms, errs := side(p, "target", r.Target, r.TargetMatchers)
			return one(ms), errs
		})...)
	}
	for i := range a.Silences {
		s := &a.Silences[i]
		_ = store(&s.selector, s.Matchers.from(), func() ([]label.Matchers, []error) {
			ms, errs := s.Matchers.compile(fmt.Sprintf("alerting.silences[%d].matchers", i))
			return one(ms), errs
		})
	}
	for i := range c.Slack.Routes {
		r := &c.Slack.Routes[i]
		errs = append(errs, store(&r.selector, r.from(), func() ([]label.Matchers, []error) {
			ms, errs := r.compile(fmt.Sprintf("slack.routes[%d]", i))
			return one(ms), errs
		})...)
	}
	for i := range c.Revoke.Policies {
		p := &c.Revoke.Policies[i]
		errs = append(errs, store(&p.selector, p.from(), func() ([]label.Matchers, []error) {
			ms, errs := p.compile(fmt.Sprintf("revoke.policies[%d]", i))
			return one(ms), errs
		})...)
	}
	errs = append(errs, store(&c.Revoke.protected, fmt.Sprintf("%q", c.Revoke.ProtectedKeys), func() ([]label.Matchers, []error) {
		return keyMatchers("revoke.protected_keys", "key_id", c.Revoke.ProtectedKeys)
	})...)
	for i := range c.Rollback.Policies {
		p := &c.Rollback.Policies[i]
		errs = append(errs, store(&p.selector, p.from(), func() ([]label.Matchers, []error) {
			ms, errs := p.compile(fmt.Sprintf("rollback.policies[%d]", i))
			return one(ms), errs
		})...)
	}
	errs = append(errs, store(&c.Rollback.critical, fmt.Sprintf("%q", c.Rollback.CriticalClients), func() ([]label.Matchers, []error) {
		return keyMatchers("rollback.critical_clients", "client_id", c.Rollback.CriticalClients)
	})...)
	return errs
}
