package console

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/internal/config"
)

var testTokens = api.Tokens{Admin: strings.Repeat("a", 32), Write: strings.Repeat("w", 32), Read: strings.Repeat("r", 32)}

func TestSessionsAreSignedExpireAndEndWithTheirToken(t *testing.T) {
	k := keys{secret: []byte(strings.Repeat("k", 32))}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := session{Name: "Dana", Scope: api.ScopeAdmin, Token: k.tokenTag(testTokens.Admin), Expires: now.Add(time.Hour).Unix(), Nonce: "n1"}
	cookie := k.seal(s)
	if got, ok := k.open(cookie, testTokens, now); !ok || got != s {
		t.Fatalf("open(seal(s)) = %+v, %v; want %+v", got, ok, s)
	}
	payload, sig, _ := strings.Cut(cookie, ".")
	forged := k.seal(session{Name: "Mallory", Scope: api.ScopeAdmin, Token: s.Token, Expires: s.Expires})
	fpayload, _, _ := strings.Cut(forged, ".")
	cases := map[string]struct {
		value  string
		tokens api.Tokens
		at     time.Time
	}{
		"expired":                   {cookie, testTokens, now.Add(time.Hour)},
		"another key's":             {keys{secret: []byte(strings.Repeat("x", 32))}.seal(s), testTokens, now},
		"payload swapped":           {fpayload + "." + sig, testTokens, now},
		"no signature":              {payload, testTokens, now},
		"admin token changed":       {cookie, api.Tokens{Admin: strings.Repeat("b", 32), Write: testTokens.Write}, now},
		"admin token removed":       {cookie, api.Tokens{Write: testTokens.Write}, now},
		"a scope above the tokens'": {k.seal(session{Name: "x", Scope: 9, Token: s.Token, Expires: s.Expires}), testTokens, now},
		"garbage":                   {"%%%.%%%", testTokens, now},
		"too long":                  {strings.Repeat("a", 3000) + "." + sig, testTokens, now},
	}
	for name, c := range cases {
		if got, ok := k.open(c.value, c.tokens, c.at); ok {
			t.Errorf("%s: accepted as %+v", name, got)
		}
	}
	if k.csrfFor(viaSession, "n1") == k.csrfFor(viaSession, "n2") || k.csrfFor(viaSession, "n1") == k.csrfFor(viaProxy, "n1") {
		t.Error("CSRF tokens of different sessions or kinds are equal")
	}
}

func TestProxyIdentityOnlyFromTrustedAddresses(t *testing.T) {
	cfg := config.Console{TrustedProxies: []string{"10.0.0.0/24", "127.0.0.2"}}
	p := proxy{trusted: cfg.TrustedPrefixes(), header: "X-Forwarded-Email", approvers: []string{"Alice@Example.com"}}
	cases := []struct {
		remote, user string
		want         bool
	}{
		{"10.0.0.9:5555", "alice@example.com", true},
		{"127.0.0.2:5555", "bob@example.com", true},
		{"[::ffff:10.0.0.9]:5555", "alice@example.com", true},
		{"10.0.1.9:5555", "alice@example.com", false},
		{"127.0.0.1:5555", "alice@example.com", false},
		{"10.0.0.9:5555", "", false},
		{"10.0.0.9:5555", "alice\x00@example.com", false},
		{"10.0.0.9:5555", strings.Repeat("a", 201), false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/console/", nil)
		r.RemoteAddr = c.remote
		r.Header.Set("X-Forwarded-Email", c.user)
		if user, ok := p.identity(r); ok != c.want || (ok && user != c.user) {
			t.Errorf("from %s as %q: %q, %v; want %v", c.remote, c.user, user, ok, c.want)
		}
	}
	if !p.approver("alice@example.com") || p.approver("bob@example.com") {
		t.Error("approvers are matched case-insensitively, and only those listed")
	}
	if (proxy{header: "X-Forwarded-Email"}).approver("") {
		t.Error("an empty approver list approves nobody")
	}
}

func TestSameOriginAndNextPage(t *testing.T) {
	for _, c := range []struct {
		origin, site string
		want         bool
	}{
		{"", "", true},
		{"http://keywatch.example:8080", "same-origin", true},
		{"https://keywatch.example:8080", "", true},
		{"https://evil.example", "", false},
		{"null", "", false},
		{"", "cross-site", false},
		{"", "same-site", false},
	} {
		r := httptest.NewRequest("POST", "http://keywatch.example:8080/console/silences", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.site != "" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		if got := sameOrigin(r); got != c.want {
			t.Errorf("Origin %q, Sec-Fetch-Site %q: %v, want %v", c.origin, c.site, got, c.want)
		}
	}
	for in, want := range map[string]string{
		"/console/actions?key=k":  "/console/actions?key=k",
		"":                        "/console/",
		"https://evil.example/":   "/console/",
		"//evil.example/console/": "/console/",
		"/console/../v1/keys":     "/console/",
		"/v1/alerts":              "/console/",
		`/console/\evil`:          "/console/",
	} {
		if got := nextPage(in); got != want {
			t.Errorf("nextPage(%q) = %q, want %q", in, got, want)
		}
	}
}
