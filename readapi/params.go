package readapi

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Pagination: a list answers at most limit items (DefaultLimit when the request gives none, at
// most MaxLimit) and, when more follow, a next_cursor to pass as cursor for the next page.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	// maxCursor bounds a cursor's length: two key ids and a time, base64-encoded, fit.
	maxCursor = 1024
)

// params are a request's query parameters, checked against the names a resource accepts.
type params struct {
	q url.Values
}

// parseParams refuses a parameter the resource does not know (a misspelt filter would otherwise
// silently select everything) and a parameter given twice.
func parseParams(raw string, known ...string) (params, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return params{}, fmt.Errorf("query: %v", err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(known, name) {
			takes := "none"
			if len(known) > 0 {
				takes = strings.Join(known, ", ")
			}
			return params{}, fmt.Errorf("query parameter %s: unknown; this resource takes %s", strconv.Quote(cut(name)), takes)
		}
		if len(q[name]) > 1 {
			return params{}, fmt.Errorf("query parameter %s: given %d times, want once", name, len(q[name]))
		}
	}
	return params{q: q}, nil
}

func (p params) get(name string) string { return p.q.Get(name) }

// page reads limit and cursor. The cursor is what an earlier answer gave as next_cursor.
func (p params) page() (limit int, cursor string, err error) {
	limit = DefaultLimit
	if s := p.get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return 0, "", fmt.Errorf("limit %s: want a whole number from 1 to %d", strconv.Quote(cut(s)), MaxLimit)
		}
		limit = n
	}
	if s := p.get("cursor"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if len(s) > maxCursor || err != nil || len(b) == 0 {
			return 0, "", fmt.Errorf("cursor %s: not a next_cursor this API gave", strconv.Quote(cut(s)))
		}
		cursor = string(b)
	}
	return limit, cursor, nil
}

// encodeCursor makes the next_cursor of a page whose last item's position is pos.
func encodeCursor(pos string) string { return base64.RawURLEncoding.EncodeToString([]byte(pos)) }

// cut shortens a value quoted back in an error to 40 bytes.
func cut(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:40] + "…"
}
