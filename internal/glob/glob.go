// Package glob owns the one pattern syntax of keywatch's configuration and API for ids and names:
// the value of a label matcher's = and != (package label), which every selector is made of
// (slack.routes, silences, inhibit rules, revoke and rollback policies, revoke.protected_keys,
// rollback.critical_clients). It matches a whole string, case-sensitively:
//
//   - * matches any run of characters, the empty one and "/" included (so "projects/*" covers
//     "projects/p/locations/global/keys/k", and "kid_root_*" covers "kid_root_a/b");
//   - ? matches exactly one character (one UTF-8 rune);
//   - \ makes the next character literal: \* \? \\ \[;
//   - every other character matches itself.
//
// There are no character classes: "[" is refused (write \[ for a literal one), so that a pattern
// written for path.Match's [...] fails validation instead of silently matching something else.
// Validation (Valid, Compile) says what is wrong and where. It does not decide what a pattern is
// matched against, nor what an empty pattern means to a caller ("any" for a policy's optional
// field): an empty pattern matches only the empty string.
package glob

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Pattern is a compiled glob.
type Pattern struct {
	src  string
	toks []token
}

type tokenKind uint8

const (
	literal tokenKind = iota
	one               // ?
	star              // *
)

type token struct {
	kind tokenKind
	lit  string
}

// Error is a pattern that does not compile: Offset is the byte of Pattern where Problem is.
type Error struct {
	Pattern string
	Offset  int
	Problem string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%q is not a valid glob: %s (at byte %d)", e.Pattern, e.Problem, e.Offset)
}

// Compile parses pattern, or says what is wrong with it.
func Compile(pattern string) (Pattern, error) {
	p := Pattern{src: pattern}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.toks = append(p.toks, token{kind: literal, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			flush()
			if n := len(p.toks); n == 0 || p.toks[n-1].kind != star { // ** is *
				p.toks = append(p.toks, token{kind: star})
			}
		case '?':
			flush()
			p.toks = append(p.toks, token{kind: one})
		case '\\':
			if i+1 == len(pattern) {
				return Pattern{}, &Error{pattern, i, `ends in a lone \, which escapes nothing; write \\ for a literal \`}
			}
			_, w := utf8.DecodeRuneInString(pattern[i+1:])
			lit.WriteString(pattern[i+1 : i+1+w])
			i += w
		case '[':
			return Pattern{}, &Error{pattern, i, `[ would start a character class, which keywatch globs do not have; write \[ for a literal [`}
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return p, nil
}

// MustCompile is Compile for patterns known to be valid; it panics otherwise.
func MustCompile(pattern string) Pattern {
	p, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return p
}

// Valid returns nil for a valid pattern, else an *Error saying what is wrong and where.
func Valid(pattern string) error {
	_, err := Compile(pattern)
	return err
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// Regexp returns an RE2 expression that matches what p matches, unanchored (a caller matching
// whole strings wraps it in ^(?:...)$): * is (?s:.*), ? is (?s:.), literals are quoted.
func (p Pattern) Regexp() string {
	var b strings.Builder
	for _, t := range p.toks {
		switch t.kind {
		case star:
			b.WriteString("(?s:.*)")
		case one:
			b.WriteString("(?s:.)")
		case literal:
			b.WriteString(regexp.QuoteMeta(t.lit))
		}
	}
	return b.String()
}

// Match reports whether the whole of s matches p.
func (p Pattern) Match(s string) bool {
	toks := p.toks
	i, j := 0, 0             // next token, next byte of s
	starTok, starAt := -1, 0 // the last * seen, and where in s what follows it is tried
	for {
		if i < len(toks) {
			switch t := toks[i]; t.kind {
			case star:
				starTok, starAt = i, j
				i++
				continue
			case one:
				if j < len(s) {
					_, w := utf8.DecodeRuneInString(s[j:])
					i, j = i+1, j+w
					continue
				}
			case literal:
				if strings.HasPrefix(s[j:], t.lit) {
					i, j = i+1, j+len(t.lit)
					continue
				}
			}
		} else if j == len(s) {
			return true
		}
		// A mismatch: the last * takes one more character, and what follows it is tried again.
		// Only the last * needs to: anything an earlier one could take, it can take instead.
		if starTok < 0 || starAt == len(s) {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starAt:])
		starAt += w
		i, j = starTok+1, starAt
	}
}

// Match reports whether the whole of s matches pattern; an invalid pattern matches nothing
// (configuration validation refuses it first, with Valid).
func Match(pattern, s string) bool {
	p, err := Compile(pattern)
	return err == nil && p.Match(s)
}
