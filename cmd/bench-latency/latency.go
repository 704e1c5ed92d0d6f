package main

import (
	"math"
	"slices"
	"strings"
	"time"
)

// announced is what became of one injection: the first message naming its key by its detector,
// or none within the timeout.
type announced struct {
	inj     injection
	latency time.Duration // from detectable to the message's arrival; valid when found
	found   bool
	method  string
	text    string // the message's fallback text
}

// announces reports whether a message is its detector's about key: it names the key and the
// detector as a word (a header "spike on rotation kid_a>kid_b", a line "critical spike: ...").
func announces(text, detector, key string) bool {
	return strings.Contains(text, key) && containsWord(text, detector)
}

// containsWord reports whether w occurs in s between characters that cannot be part of a
// detector's name (letters, digits, _).
func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(w)
		if (at == 0 || !nameChar(s[at-1])) && (end == len(s) || !nameChar(s[end])) {
			return true
		}
		i = at + 1
	}
}

func nameChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// match finds, for each injection, the first arrival at or after its detectable time that
// announces it, within timeout.
func match(injs []injection, arrivals []arrival, timeout time.Duration) []announced {
	out := make([]announced, 0, len(injs))
	for _, inj := range injs {
		a := announced{inj: inj}
		for _, m := range arrivals {
			if m.at.Before(inj.detectable) || m.at.Sub(inj.detectable) > timeout {
				continue
			}
			if announces(m.text+"\n"+m.blocks, inj.subject.kind.detector(), inj.subject.oldKey) {
				a.found, a.latency, a.method, a.text = true, m.at.Sub(inj.detectable), m.method, m.text
				break
			}
		}
		out = append(out, a)
	}
	return out
}

// early counts the messages that name an injection's key before it was injected: alerts on the
// subjects' steady traffic, which the benchmark does not expect.
func early(injs []injection, arrivals []arrival) int {
	n := 0
	for _, m := range arrivals {
		for _, inj := range injs {
			if m.at.Before(inj.detectable) && strings.Contains(m.text+"\n"+m.blocks, inj.subject.oldKey) {
				n++
				break
			}
		}
	}
	return n
}

// summary is the latency of one kind's injections.
type summary struct {
	count, missed int
	// p50, p95 and max over every injection, a missed one counting as infinitely late
	// (math.MaxInt64): a percentile that falls on a missed one is not met.
	p50, p95, max time.Duration
}

// never is the latency of an injection never announced.
const never = time.Duration(math.MaxInt64)

func summarize(as []announced) summary {
	s := summary{count: len(as)}
	if len(as) == 0 {
		return s
	}
	lat := make([]time.Duration, 0, len(as))
	for _, a := range as {
		if !a.found {
			s.missed++
			lat = append(lat, never)
			continue
		}
		lat = append(lat, a.latency)
	}
	slices.Sort(lat)
	s.p50, s.p95, s.max = percentile(lat, 50), percentile(lat, 95), lat[len(lat)-1]
	return s
}

// percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted values: the smallest value
// with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
