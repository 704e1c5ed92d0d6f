package ingest

import (
	"regexp"
	"strings"
)

// excerptMax bounds the excerpt of a dead letter.
const excerptMax = 512

var (
	// secretField matches the value of any JSON member whose name says it holds a secret, also
	// when the message is cut off inside that value.
	secretField = regexp.MustCompile(`(?i)("[^"]*(?:api[_-]?key|apikey|secret|token|password|authorization)[^"]*"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\s]+)`)
	// secretShape matches common live/test secret formats wherever they stand.
	secretShape = regexp.MustCompile(`\b(?:sk|rk|pk|api)_(?:live|test|prod)_[A-Za-z0-9_\-]{4,}`)
)

// Redact returns a short, valid UTF-8 excerpt of msg with every secret-looking value replaced by
// "[redacted]". It is what dead_letters stores in place of the message.
func Redact(msg []byte) string {
	s := strings.ToValidUTF8(string(msg[:min(len(msg), 4*excerptMax)]), "\uFFFD")
	s = secretField.ReplaceAllString(s, `$1"[redacted]"`)
	s = secretShape.ReplaceAllString(s, "[redacted]")
	if len(s) > excerptMax {
		s = strings.ToValidUTF8(s[:excerptMax], "") + "…"
	}
	return s
}
