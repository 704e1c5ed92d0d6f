package detect

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// Display fields: each detector's evidence says itself in words (finding.Field, the fields method
// beside each evidence type), in the order a person on call reads it, after the identity (key,
// client, rotation) that every finding shows. Values are plain text; each output escapes and
// formats them for its medium. This file holds what they share.

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
