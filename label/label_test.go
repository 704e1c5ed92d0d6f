package label

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestMatcherOps(t *testing.T) {
	for _, c := range []struct {
		matcher string
		value   string
		want    bool
	}{
		// = and != are globs over the whole value; * crosses "/".
		{`key_id="kid_root_*"`, "kid_root_a/b", true},
		{`key_id="kid_root_*"`, "kid_live_1", false},
		{`key_id="projects/*/keys/k"`, "projects/p/locations/global/keys/k", true},
		{`key_id="kid_?"`, "kid_é", true},
		{`key_id="kid_?"`, "kid_ab", false},
		{`key_id="kid\\[1\\]"`, "kid[1]", true},
		{`key_id="kid_root"`, "kid_root_2", false}, // whole value: no prefix match
		{`key_id=""`, "", true},
		{`key_id=""`, "x", false},
		{`key_id!="kid_root_*"`, "kid_root_a", false},
		{`key_id!="kid_root_*"`, "kid_live", true},
		{`key_id!=""`, "", false},
		// =~ and !~ are RE2, anchored at both ends.
		{`detector=~"leak.*"`, "leak_report", true},
		{`detector=~"leak"`, "leak_report", false},
		{`detector=~"leak"`, "a_leak", false},
		{`detector=~"leak|spike"`, "spike", true},
		{`detector=~"leak|spike"`, "spike2", false}, // the alternation is anchored as a whole
		{`detector!~"leak.*"`, "spike", true},
		{`detector!~"leak.*"`, "leak", false},
		{`client_id=~".*"`, "", true},
		// Spaces around the name and the operator are allowed.
		{` severity = "critical" `, "critical", true},
	} {
		m, err := ParseMatcher(c.matcher)
		if err != nil {
			t.Fatalf("ParseMatcher(%q): %v", c.matcher, err)
		}
		if got := m.Matches(c.value); got != c.want {
			t.Errorf("%s on %q = %v, want %v", m, c.value, got, c.want)
		}
	}
}

func TestParseMatcherErrors(t *testing.T) {
	for _, c := range []struct{ text, says string }{
		{`key_id`, "no operator"},
		{`key_id~"x"`, "no operator"},
		{`key_id=kid_root_*`, "not in double quotes"},
		{`key_id="kid`, "not one double-quoted string"},
		{`key_id="a" x`, "not one double-quoted string"},
		{`="kid"`, `"" is not a label name`},
		{`1key="kid"`, `"1key" is not a label name`},
		{`key-id="kid"`, `"key-id" is not a label name`},
		{`key_id="kid_[ab]"`, `"kid_[ab]" is not a valid glob: [ would start a character class`},
		{`key_id!="kid\\"`, `is not a valid glob: ends in a lone \`},
		{`detector=~"(leak"`, `"(leak" is not a valid regular expression: missing closing )`},
		{`detector!~"*"`, `is not a valid regular expression: missing argument to repetition operator`},
	} {
		_, err := ParseMatcher(c.text)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseMatcher(%q): %v, want it to say %q", c.text, err, c.says)
		}
	}
}

// The string form writes back as it reads.
func TestMatcherString(t *testing.T) {
	for _, s := range []string{`key_id="kid_root_*"`, `key_id!="a\"b"`, `detector=~"leak.*"`, `client_id!~"acme-.*"`, `key_id="kid\\[1\\]"`} {
		m, err := ParseMatcher(s)
		if err != nil {
			t.Fatal(err)
		}
		if m.String() != s {
			t.Errorf("%q written back as %q", s, m.String())
		}
		again, err := ParseMatcher(m.String())
		if err != nil || again.Op != m.Op || again.Name != m.Name || again.Value != m.Value {
			t.Errorf("%q read back as %+v (%v)", m.String(), again, err)
		}
	}
}

func TestMatchersAll(t *testing.T) {
	ms, err := ParseMatchers([]string{`detector=~"leak.*"`, `severity="critical"`, `client_id!="acme-*"`})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		set  Set
		want bool
	}{
		{Set{"detector": "leak", "severity": "critical", "client_id": "globex"}, true},
		{Set{"detector": "leak", "severity": "critical"}, true}, // an absent label reads ""
		{Set{"detector": "leak", "severity": "warning"}, false},
		{Set{"detector": "leak", "severity": "critical", "client_id": "acme-web"}, false},
		{Set{}, false},
	} {
		if got := ms.Matches(c.set); got != c.want {
			t.Errorf("%s on %v = %v, want %v", ms, c.set, got, c.want)
		}
	}
	if !(Matchers{}).Matches(Set{"a": "b"}) || !Matchers(nil).Matches(nil) {
		t.Error("no matchers must select everything")
	}
	if _, err := ParseMatchers([]string{`a="b"`, `c`}); err == nil || !strings.HasPrefix(err.Error(), "[1]: ") {
		t.Errorf("ParseMatchers names the bad one by index: %v", err)
	}
	if !ms.Names("severity") || ms.Names("key_id") {
		t.Error("Names")
	}
	if got := ms.Without("severity").String(); got != `{detector=~"leak.*", client_id!="acme-*"}` {
		t.Errorf("Without: %s", got)
	}
}

// The map form of the YAML file (silences, inhibit rules): label → glob, every one must match.
func TestFromMapYAML(t *testing.T) {
	var m map[string]string
	if err := yaml.Unmarshal([]byte(`{key_id: "kid_root_*", detector: lingering}`), &m); err != nil {
		t.Fatal(err)
	}
	ms, err := FromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := ms.String(); got != `{detector="lingering", key_id="kid_root_*"}` {
		t.Errorf("FromMap = %s, want the labels in order, each =", got)
	}
	if !ms.Matches(Set{"key_id": "kid_root_a/b", "detector": "lingering"}) || ms.Matches(Set{"key_id": "kid_root_a", "detector": "spike"}) {
		t.Errorf("%s matches wrongly", ms)
	}
	if _, err := FromMap(map[string]string{"key_id": "kid_["}); err == nil || !strings.HasPrefix(err.Error(), `key_id: "kid_[" is not a valid glob`) {
		t.Errorf("FromMap names the label: %v", err)
	}
}

// AnyOf is the list form of routes (detector: [a, b]): any of the globs.
func TestAnyOf(t *testing.T) {
	m, err := AnyOf("client_id", []string{"acme-*", "globex", `a.b`})
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]bool{"acme-web": true, "acme-": true, "globex": true, "globex2": false, "a.b": true, "aXb": false, "": false, "x/acme-1": false} {
		if got := m.Matches(v); got != want {
			t.Errorf("%s on %q = %v, want %v", m, v, got, want)
		}
	}
	if one, _ := AnyOf("client_id", []string{"acme-*"}); one.String() != `client_id="acme-*"` {
		t.Errorf("one glob is =: %s", one)
	}
	if none, err := AnyOf("client_id", nil); none != nil || err != nil {
		t.Errorf("no glob: %v %v, want nil", none, err)
	}
	if _, err := AnyOf("client_id", []string{"a", "[b"}); err == nil {
		t.Error("an invalid glob must fail")
	}
}

// MatchesAny is a list of selectors any of which selects: protected keys, critical clients.
func TestMatchesAny(t *testing.T) {
	var list []Matchers
	for _, g := range []string{"kid_root_*", "projects/*"} {
		list = append(list, Matchers{MustNewMatcher(Equal, "key_id", g)})
	}
	for s, want := range map[string]bool{
		"kid_root_a/b": true, "projects/p/locations/global/keys/k": true, "kid_live_1": false, "": false,
	} {
		if got := MatchesAny(list, Set{"key_id": s}); got != want {
			t.Errorf("MatchesAny(%q) = %v, want %v", s, got, want)
		}
	}
	if MatchesAny(nil, Set{"key_id": ""}) {
		t.Error("MatchesAny(nil) = true, want false")
	}
}

func TestRouteWalk(t *testing.T) {
	route := func(channel string, cont bool, matchers ...string) Route {
		ms, err := ParseMatchers(matchers)
		if err != nil {
			t.Fatal(err)
		}
		return Route{Matchers: ms, Channel: channel, Continue: cont}
	}
	routes := Routes{
		route("#security", false, `severity="critical"`, `detector="leak*"`),
		route("#acme", true, `client_id="acme-*"`),
		route("#rotations", false, `detector=~"lingering|spike"`),
		route("#never", false, `detector="lingering"`),
		route("#acme", false), // matches everything; the channel is given once
	}
	for _, c := range []struct {
		name string
		sets []Set
		want []string
	}{
		{"first match wins", []Set{{"detector": "leak", "severity": "critical"}}, []string{"#security"}},
		{"continue goes on to the next match", []Set{{"detector": "lingering", "client_id": "acme-web"}}, []string{"#acme", "#rotations"}},
		{"continue, then a catch-all", []Set{{"detector": "hygiene", "client_id": "acme-web"}}, []string{"#acme"}},
		{"any set matches", []Set{{"detector": "hygiene"}, {"detector": "spike"}}, []string{"#rotations"}},
		{"no set, no route", nil, nil},
	} {
		if got := routes.Channels(c.sets...); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := routes.Match(Set{"detector": "lingering", "client_id": "acme-web"}); len(got) != 2 || got[0].Channel != "#acme" || got[1].Channel != "#rotations" {
		t.Errorf("Match: %+v", got)
	}
	if got := (Routes{route("#a", false, `detector="x"`)}).Channels(Set{"detector": "y"}); got != nil {
		t.Errorf("no match: %q", got)
	}
}
