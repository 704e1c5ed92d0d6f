package detect

import (
	"fmt"
	"sort"
	"strings"
)

// Display fields: each detector's evidence says itself in words (finding.Field, the fields method
// beside each evidence type), in the order a person on call reads it, after the identity (key,
// client, rotation) that every finding shows. Values are plain text; each output escapes and
// formats them for its medium. This file holds what they share.

// FieldFoldedFindings is the display field of a folded finding: how many findings it stands for.
const FieldFoldedFindings = "Findings folded in"

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
