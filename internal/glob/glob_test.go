package glob

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		// * crosses "/": the reason this package exists (issue #14).
		{"kid_root_*", "kid_root_a/b", true},
		{"kid_root_*", "kid_root_", true},
		{"kid_root_*", "kid_roo", false},
		{"projects/*", "projects/p/locations/global/keys/k", true},
		{"projects/*/keys/k", "projects/p/locations/global/keys/k", true},
		{"projects/*/keys/k", "projects/p/locations/global/keys/k2", false},
		{"*/keys/*", "projects/p/keys/k", true},
		{"*", "", true},
		{"*", "a/b/c", true},
		{"**", "a/b", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZcd", false},
		{"*c", "abcbc", true},
		{"*ab", "aab", true},
		{"a*a*a", "aa", false},
		{"", "", true},
		{"", "x", false},
		{"leak*", "leak_report", true},
		{"leak*", "leak", true},
		{"leak*", "spike", false},
		{"kid_old>*", "kid_old>kid_new", true},
		// ? is one character, "/" and multi-byte runes included.
		{"kid_?", "kid_a", true},
		{"kid_?", "kid_/", true},
		{"kid_?", "kid_é", true},
		{"kid_?", "kid_", false},
		{"kid_?", "kid_ab", false},
		{"?*", "", false},
		{"*?", "x", true},
		// \ escapes; [ and ] are literal once escaped (] alone is literal).
		{`kid\*`, "kid*", true},
		{`kid\*`, "kid_a", false},
		{`what\?`, "what?", true},
		{`what\?`, "whatX", false},
		{`back\\slash`, `back\slash`, true},
		{`\[prod\]*`, "[prod]-kid", true},
		{`x]`, "x]", true},
		{`\é`, "é", true},
		// Case-sensitive, whole string.
		{"KID_*", "kid_a", false},
		{"kid", "kid_a", false},
		{"id", "kid", false},
		// Invalid patterns match nothing.
		{"kid_[ab]", "kid_a", false},
		{"kid_[ab]", "kid_[ab]", false},
		{`kid\`, `kid\`, false},
	} {
		if got := Match(c.pattern, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// TestRegexp: a pattern's regular expression, anchored, matches what the pattern matches.
func TestRegexp(t *testing.T) {
	for _, c := range []struct{ pattern, s string }{
		{"kid_root_*", "kid_root_a/b"}, {"kid_root_*", "kid_roo"}, {"projects/*/keys/k", "projects/p/locations/global/keys/k"},
		{"a*b*c", "aXbYbZcd"}, {"kid_?", "kid_é"}, {"kid_?", "kid_ab"}, {`kid\[1\]`, "kid[1]"}, {`a.b`, "aXb"},
		{"*", "line\nbreak"}, {"a?c", "a\nc"}, {"", ""}, {"", "x"}, {"(x)+", "(x)+"},
	} {
		re := regexp.MustCompile("^(?:" + MustCompile(c.pattern).Regexp() + ")$")
		if got, want := re.MatchString(c.s), Match(c.pattern, c.s); got != want {
			t.Errorf("%q as %s on %q: %v, Match says %v", c.pattern, re, c.s, got, want)
		}
	}
}

func TestValid(t *testing.T) {
	for _, c := range []struct {
		pattern string
		offset  int    // -1: valid
		says    string // in the message
	}{
		{"kid_root_*", -1, ""},
		{`\[x\]`, -1, ""},
		{"", -1, ""},
		{"kid_[ab]*", 4, `write \[ for a literal [`},
		{"[", 0, "character class"},
		{`kid\`, 3, `lone \`},
		{`a\\`, -1, ""},
	} {
		err := Valid(c.pattern)
		if c.offset < 0 {
			if err != nil {
				t.Errorf("Valid(%q): %v, want nil", c.pattern, err)
			}
			continue
		}
		var ge *Error
		if !errors.As(err, &ge) || ge.Offset != c.offset || ge.Pattern != c.pattern || !strings.Contains(err.Error(), c.says) ||
			!strings.Contains(err.Error(), `"`+strings.ReplaceAll(c.pattern, `\`, `\\`)+`"`) {
			t.Errorf("Valid(%q): %v, want an *Error at byte %d naming the pattern and saying %q", c.pattern, err, c.offset, c.says)
		}
	}
}

func TestCompileReuse(t *testing.T) {
	p := MustCompile("projects/*/keys/?")
	if p.String() != "projects/*/keys/?" || !p.Match("projects/a/b/keys/k") || p.Match("projects/a/keys/kk") {
		t.Errorf("compiled %q matches wrongly", p)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustCompile of an invalid pattern did not panic")
		}
	}()
	MustCompile("[")
}

// oracle is Match as a regular expression: * is (?s:.*), ? one rune, the rest literal.
func oracle(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^(?s)`)
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// FuzzMatch holds Match to the regular expression it stands for, on ASCII patterns and strings.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"kid_root_*", "kid_root_a/b"}, {"a*b?c", "aXXbYc"}, {"*a*a*", "banana"}, {`\*?`, "*x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !ascii(pattern) || !ascii(s) || Valid(pattern) != nil {
			return
		}
		if got, want := Match(pattern, s), oracle(pattern).MatchString(s); got != want {
			t.Errorf("Match(%q, %q) = %v, the regular expression says %v", pattern, s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
