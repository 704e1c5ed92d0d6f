package ingest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen is the longest identifier (key id, client id, new key id) ingest accepts, in bytes:
// room for GCP-style resource names (projects/p/locations/global/keys/k) and ARNs.
const MaxIDLen = 256

// Bounds of the free-text fields of an event, in bytes: longer values are cut (ending in "…"),
// not refused. A lifecycle event's reason is bounded like a user agent.
const (
	maxUserAgentLen = 512
	maxRouteLen     = 256
	maxRequestIDLen = 256
	maxGatewayLen   = 256
	maxMethodLen    = 32
	maxReasonLen    = 512
)

// ValidateID checks value as the identifier field (key_id, client_id, new_key_id, ...) before it
// is stored: identifiers end up in ClickHouse sort keys, Slack messages, logs and terminal tables,
// where a control character, an ANSI escape or a bidi override would hide or reorder what a reader
// sees. An identifier is at most MaxIDLen bytes of valid UTF-8 without control characters (C0,
// DEL, C1), Unicode format characters (bidi controls U+202A–U+202E, U+2066–U+2069, U+200E,
// U+200F, U+061C; zero-width U+200B–U+200D, U+2060, U+FEFF; the rest of category Cf) or line and
// paragraph separators (U+2028, U+2029). Letters of any script, digits, spaces and punctuation
// such as / : . - _ @ are accepted.
//
// An empty value passes: whether the field is required is for the caller to say. The error is a
// *DecodeError with reason invalid_value whose detail names field and quotes the value escaped
// (never a raw control character) and cut to 40 bytes.
func ValidateID(field, value string) error {
	if len(value) > MaxIDLen {
		return decodeErr(ReasonInvalidValue, "%s: %d bytes, longer than %d: %s", field, len(value), MaxIDLen, quoteShort(value))
	}
	if printableASCII(value) {
		return nil
	}
	for i := 0; i < len(value); {
		c := value[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(value[i:])
		if r == utf8.RuneError && size == 1 {
			return decodeErr(ReasonInvalidValue, "%s: not valid UTF-8 (byte %d): %s", field, i, quoteShort(value))
		}
		if what := unsafeRune(r); what != "" {
			return decodeErr(ReasonInvalidValue, "%s: holds %s U+%04X at byte %d: %s", field, what, r, i, quoteShort(value))
		}
		i += size
	}
	return nil
}

// unsafeRune says what r is when it must not reach a reader unescaped: "a control character",
// "a bidi control", "an invisible format character" or "a line or paragraph separator"; "" for
// any other rune.
func unsafeRune(r rune) string {
	switch {
	case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
		return "a control character"
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return "a bidi control"
	case r == 0x2028 || r == 0x2029:
		return "a line or paragraph separator"
	case r < 0xad:
		return ""
	case unicode.Is(unicode.Cf, r):
		return "an invisible format character"
	}
	return ""
}

// quoteShort quotes s for an error message: cut to 40 bytes, every control, format and invalid
// byte escaped.
func quoteShort(s string) string {
	if len(s) <= 40 {
		return strconv.Quote(s)
	}
	cut := 40
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// cleanText bounds a free-text field to max bytes (a longer value is cut at a character boundary
// and ends in "…") and replaces invalid UTF-8 and what unsafeRune names with U+FFFD, so that it
// can be shown anywhere as it is. A value that needs neither is returned as it is.
func cleanText(s string, max int) string {
	clean := printableASCII(s)
	if clean && len(s) <= max {
		return s
	}
	if !clean {
		var b strings.Builder
		b.Grow(min(len(s), max+8))
		for i := 0; i < len(s) && b.Len() <= max; {
			r, size := utf8.DecodeRuneInString(s[i:])
			if (r == utf8.RuneError && size == 1) || unsafeRune(r) != "" {
				r = utf8.RuneError
			}
			b.WriteRune(r)
			i += size
		}
		s = b.String()
	}
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// printableASCII reports whether every byte of s is printable ASCII (0x20–0x7e), eight bytes at a
// time: what nearly every id and free-text field is, on the path every event takes.
func printableASCII(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte is bad when its high bit is set (>= 0x80), it is below 0x20, or it is 0x7f: the
		// two subtractions borrow only upwards from such a byte, so any bad byte is found.
		if (x|((x-ones*0x20)&^x)|(((x^ones*0x7f)-ones)&^(x^ones*0x7f)))&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// validateIDs checks each (field, value) pair with ValidateID and returns the first error.
func validateIDs(pairs ...string) error {
	if len(pairs)%2 != 0 {
		panic(fmt.Sprintf("validateIDs: %d arguments, want pairs", len(pairs)))
	}
	for i := 0; i < len(pairs); i += 2 {
		if err := ValidateID(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}
