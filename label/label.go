// Package label owns keywatch's one selector language: label sets (what a finding or an alert is
// about: detector, severity, key_id, client_id, rotation_id, and the labels a detector adds),
// matchers that select by them, and the route walk that picks channels. Slack routes, digests,
// silences, inhibit rules, revoke and rollback policies, revoke.protected_keys and
// rollback.critical_clients are all written in it. Prometheus Alertmanager's pkg/labels and
// dispatch/route.go are the model.
//
// A matcher is a label name, an operator and a value:
//
//   - name="glob" and name!="glob": the value is a glob (package glob: * matches any run of
//     characters, "/" included, ? one character, \ escapes; no [...] classes), matched against the
//     whole label value;
//   - name=~"regexp" and name!~"regexp": the value is an RE2 expression, anchored at both ends.
//
// A label a set does not have reads as the empty string. It does not know where labels come from
// (package finding, package alerting) nor what a selected thing is done with.
package label

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/keywatch/keywatch/internal/glob"
)

// Set is the labels of one thing: name → value.
type Set map[string]string

// Op is how a matcher compares a label's value with its own.
type Op uint8

// The operators.
const (
	Equal     Op = iota // =: the value matches the glob
	NotEqual            // !=: the value does not match the glob
	Regexp              // =~: the value matches the regexp
	NotRegexp           // !~: the value does not match the regexp
)

var opText = [...]string{Equal: "=", NotEqual: "!=", Regexp: "=~", NotRegexp: "!~"}

func (o Op) String() string {
	if int(o) < len(opText) {
		return opText[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Matcher selects by one label. Build it with NewMatcher or ParseMatcher, which compile its
// value once.
type Matcher struct {
	Name  string
	Op    Op
	Value string

	glob glob.Pattern
	re   *regexp.Regexp
}

var name = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NewMatcher compiles a matcher, or says what is wrong with its name or value.
func NewMatcher(op Op, label, value string) (*Matcher, error) {
	if !name.MatchString(label) {
		return nil, fmt.Errorf("%q is not a label name: want letters, digits and _, not starting with a digit", label)
	}
	m := &Matcher{Name: label, Op: op, Value: value}
	switch op {
	case Equal, NotEqual:
		p, err := glob.Compile(value)
		if err != nil {
			return nil, err
		}
		m.glob = p
	case Regexp, NotRegexp:
		if _, err := regexp.Compile(value); err != nil { // alone, so that the error quotes it as written
			var se *syntax.Error
			if errors.As(err, &se) {
				err = errors.New(se.Code.String())
			}
			return nil, fmt.Errorf("%q is not a valid regular expression: %v", value, err)
		}
		m.re = regexp.MustCompile("^(?:" + value + ")$")
	default:
		return nil, fmt.Errorf("%s is not an operator: want =, !=, =~ or !~", op)
	}
	return m, nil
}

// MustNewMatcher is NewMatcher for matchers known to be valid; it panics otherwise.
func MustNewMatcher(op Op, label, value string) *Matcher {
	m, err := NewMatcher(op, label, value)
	if err != nil {
		panic(err)
	}
	return m
}

// AnyOf is a matcher of label for any of globs: name="glob" for one, name=~"a|b" (the globs as
// one regexp) for several. It returns nil for none, which callers treat as "any".
func AnyOf(label string, globs []string) (*Matcher, error) {
	switch len(globs) {
	case 0:
		return nil, nil
	case 1:
		return NewMatcher(Equal, label, globs[0])
	}
	alts := make([]string, len(globs))
	for i, g := range globs {
		p, err := glob.Compile(g)
		if err != nil {
			return nil, err
		}
		alts[i] = p.Regexp()
	}
	return NewMatcher(Regexp, label, strings.Join(alts, "|"))
}

// Matches reports whether value satisfies m.
func (m *Matcher) Matches(value string) bool {
	switch m.Op {
	case Equal:
		return m.glob.Match(value)
	case NotEqual:
		return !m.glob.Match(value)
	case Regexp:
		return m.re.MatchString(value)
	case NotRegexp:
		return !m.re.MatchString(value)
	}
	return false
}

// String writes m as ParseMatcher reads it: key_id="kid_root_*".
func (m *Matcher) String() string { return m.Name + m.Op.String() + strconv.Quote(m.Value) }

// ParseMatcher reads the string form of a matcher: name="glob", name!="glob", name=~"regexp" or
// name!~"regexp". The value is double-quoted with Go's escapes, so a glob's \[ is written "\\[".
func ParseMatcher(s string) (*Matcher, error) {
	const want = `want name="glob", name!="glob", name=~"regexp" or name!~"regexp"`
	text := strings.TrimSpace(s)
	i := strings.IndexAny(text, "=!")
	if i < 0 {
		return nil, fmt.Errorf("%q: no operator: %s", s, want)
	}
	label, rest := strings.TrimSpace(text[:i]), text[i:]
	var op Op
	switch {
	case strings.HasPrefix(rest, "=~"):
		op, rest = Regexp, rest[2:]
	case strings.HasPrefix(rest, "!~"):
		op, rest = NotRegexp, rest[2:]
	case strings.HasPrefix(rest, "!="):
		op, rest = NotEqual, rest[2:]
	case strings.HasPrefix(rest, "="):
		op, rest = Equal, rest[1:]
	default:
		return nil, fmt.Errorf("%q: no operator: %s", s, want)
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, `"`) {
		return nil, fmt.Errorf("%q: the value is not in double quotes: %s", s, want)
	}
	value, err := strconv.Unquote(rest)
	if err != nil {
		return nil, fmt.Errorf("%q: the value is not one double-quoted string (escape \" and \\ inside it with \\): %s", s, want)
	}
	m, err := NewMatcher(op, label, value)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	return m, nil
}

// Matchers select what every one of them matches; none select everything.
type Matchers []*Matcher

// Matches reports whether every matcher matches its label of set.
func (ms Matchers) Matches(set Set) bool {
	for _, m := range ms {
		if !m.Matches(set[m.Name]) {
			return false
		}
	}
	return true
}

// Names reports whether a matcher selects by label.
func (ms Matchers) Names(label string) bool {
	return slices.ContainsFunc(ms, func(m *Matcher) bool { return m.Name == label })
}

// Without returns the matchers that do not select by any of labels.
func (ms Matchers) Without(labels ...string) Matchers {
	var out Matchers
	for _, m := range ms {
		if !slices.Contains(labels, m.Name) {
			out = append(out, m)
		}
	}
	return out
}

// String writes the matchers as {name="value", ...}, in their order.
func (ms Matchers) String() string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ParseMatchers reads matchers in the string form (ParseMatcher); the error names the first bad
// one by its index.
func ParseMatchers(texts []string) (Matchers, error) {
	out := make(Matchers, 0, len(texts))
	for i, s := range texts {
		m, err := ParseMatcher(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// FromMap reads the map form of matchers, label → glob, each one label="glob"; they are in label
// order. The error names the first bad label.
func FromMap(m map[string]string) (Matchers, error) {
	labels := make([]string, 0, len(m))
	for l := range m {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	out := make(Matchers, 0, len(m))
	for _, l := range labels {
		mt, err := NewMatcher(Equal, l, m[l])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		out = append(out, mt)
	}
	return out, nil
}

// MatchesAny reports whether one of list selects set; an empty list selects nothing (a list of
// protected keys or critical clients, each its own selector).
func MatchesAny(list []Matchers, set Set) bool {
	return slices.ContainsFunc(list, func(ms Matchers) bool { return ms.Matches(set) })
}
