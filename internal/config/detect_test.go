package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRouteScopeRules: the most specific rule decides a request's scopes: the longest literal
// route, then one naming a method.
func TestRouteScopeRules(t *testing.T) {
	l := Default().Detect.Leak
	l.RouteScopes = map[string]string{
		"/v1/*":               "read",
		"/v1/orders*":         "trade",
		"get /v1/orders*":     "read, admin ,read",
		"/v1/orders/*/cancel": "trade",
	}
	rules, err := l.RouteScopeRules()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, route string
		pattern       string // "": no rule
		scopes        []string
	}{
		{"POST", "/v1/orders", "/v1/orders*", []string{"trade"}},
		{"GET", "/v1/orders/7", "get /v1/orders*", []string{"admin", "read"}},
		{"get", "/v1/orders", "get /v1/orders*", []string{"admin", "read"}},
		{"POST", "/v1/orders/7/cancel", "/v1/orders/*/cancel", []string{"trade"}},
		{"GET", "/v1/prices", "/v1/*", []string{"read"}},
		{"GET", "/v2/prices", "", nil},
		{"GET", "/v1", "", nil},
	} {
		var got RouteScopeRule
		for _, r := range rules {
			if r.Match(tc.method, tc.route) {
				got = r
				break
			}
		}
		if got.Pattern != tc.pattern || !slices.Equal(got.Scopes, tc.scopes) {
			t.Errorf("%s %s: rule %q scopes %v, want %q %v", tc.method, tc.route, got.Pattern, got.Scopes, tc.pattern, tc.scopes)
		}
	}
}

func TestRouteScopesValidated(t *testing.T) {
	cfg := Default()
	cfg.Detect.Leak.RouteScopes = map[string]string{"/v1/orders*": " , ", "GE7 /v1/x": "trade", "* /v1/any": "read", "GET /v1/a b": "read", "/ok": "read"}
	cfg.Detect.Leak.ScopeProbingMinRequests = 0
	var msgs []string
	for _, err := range cfg.Detect.validate() {
		msgs = append(msgs, err.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`"/v1/orders*": no scope given`, `"GE7 /v1/x": want [METHOD ]glob`, `"GET /v1/a b": want [METHOD ]glob`,
		"detect.leak.scope_probing_min_requests: 0: want at least 1"} {
		if !strings.Contains(all, want) {
			t.Errorf("validation errors\n%s\nmiss %q", all, want)
		}
	}
	if strings.Contains(all, `"/ok"`) || strings.Contains(all, `"* /v1/any"`) {
		t.Errorf("valid patterns refused:\n%s", all)
	}
}

// TestScopeHistoryValidated: the standing days of scope probing's history fit in the history; no
// history needs none.
func TestScopeHistoryValidated(t *testing.T) {
	for _, tc := range []struct {
		history Duration
		days    int
		want    string // "" valid
	}{
		{Duration(14 * 24 * time.Hour), 3, ""},
		{0, 0, ""},
		{Duration(14 * 24 * time.Hour), 15, "detect.leak.scope_standing_days: 15: want 1 to the 14 whole days of detect.leak.scope_history"},
		{Duration(14 * 24 * time.Hour), 0, "detect.leak.scope_standing_days: 0: want 1 to the 14"},
		{Duration(-time.Hour), 3, "detect.leak.scope_history: -1h0m0s: must not be negative"},
	} {
		cfg := Default()
		cfg.Detect.Leak.ScopeHistory, cfg.Detect.Leak.ScopeStandingDays = tc.history, tc.days
		var msgs []string
		for _, err := range cfg.Detect.validate() {
			msgs = append(msgs, err.Error())
		}
		all := strings.Join(msgs, "\n")
		if (tc.want == "") != (all == "") || !strings.Contains(all, tc.want) {
			t.Errorf("history %s, %d days: errors %q, want %q", tc.history, tc.days, all, tc.want)
		}
	}
}
