package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/keywatch/keywatch/internal/api"
)

// sessionCookie holds a token sign-in. The __Host- prefix makes the browser keep it only when it
// is Secure, for the whole host and no other.
const sessionCookie = "__Host-keywatch-console"

// Where a person's identity came from.
const (
	viaSession = "session" // a bearer token exchanged for a session cookie
	viaProxy   = "proxy"   // the authenticating proxy's header
)

// identity is who a request is from and what they may do.
type identity struct {
	// ID is what the audit records after "console:": the proxy's user, or the name given at
	// sign-in with the token's scope ("alice/admin-token").
	ID string
	// Name is what pages show.
	Name  string
	Via   string
	Scope api.Scope
	// Approver may approve and refuse pending actions.
	Approver bool
	// csrf is the token every form of this identity carries.
	csrf string
}

// canSilence says whether the identity may create and expire silences (the write scope, as
// POST /v1/silences wants).
func (id identity) canSilence() bool { return id.Scope >= api.ScopeWrite }

// session is what the session cookie carries, signed.
type session struct {
	Name    string    `json:"n"`
	Scope   api.Scope `json:"s"`
	Token   string    `json:"t"` // tokenTag of the token signed in with: a changed token ends its sessions
	Expires int64     `json:"e"` // Unix seconds
	Nonce   string    `json:"r"` // the CSRF token is derived from it
}

// keys signs sessions and CSRF tokens with the configured session key.
type keys struct {
	secret []byte
}

func (k keys) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, k.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// tokenTag is a short digest of a bearer token, kept in the session in place of the token.
func (k keys) tokenTag(token string) string {
	return hex.EncodeToString(k.mac("token", token)[:12])
}

// seal encodes s as a cookie value: payload.mac, both base64url.
func (k keys) seal(s session) string {
	payload, _ := json.Marshal(s)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(k.mac("session", p))
}

// open decodes and checks a cookie value: its signature, its expiry, and that the token it was
// made with is still the token of its scope.
func (k keys) open(value string, tokens api.Tokens, now time.Time) (session, bool) {
	p, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 2048 {
		return session{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, k.mac("session", p)) {
		return session{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return session{}, false
	}
	var s session
	if json.Unmarshal(raw, &s) != nil || now.Unix() >= s.Expires {
		return session{}, false
	}
	tok := tokens.Of(s.Scope)
	if tok == "" || !hmac.Equal([]byte(k.tokenTag(tok)), []byte(s.Token)) {
		return session{}, false
	}
	return s, true
}

// csrfFor is the CSRF token of a session (from its nonce) or of a proxy identity (from its name).
func (k keys) csrfFor(via, subject string) string {
	return base64.RawURLEncoding.EncodeToString(k.mac("csrf", via, subject)[:18])
}

func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// proxy believes the identity header of connections from trusted addresses only.
type proxy struct {
	trusted   []netip.Prefix
	header    string
	approvers []string
}

// identity returns the proxy's user of r, if r comes from a trusted proxy and names one.
func (p proxy) identity(r *http.Request) (string, bool) {
	user := strings.TrimSpace(r.Header.Get(p.header))
	if user == "" || len(p.trusted) == 0 {
		return "", false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "", false
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "", false
	}
	addr = addr.Unmap()
	if !slices.ContainsFunc(p.trusted, func(pr netip.Prefix) bool { return pr.Contains(addr) }) {
		return "", false
	}
	if !validName(user) {
		return "", false
	}
	return user, true
}

func (p proxy) approver(user string) bool {
	return slices.ContainsFunc(p.approvers, func(a string) bool { return strings.EqualFold(strings.TrimSpace(a), user) })
}

// maxName is the longest name a person may give or a proxy may send.
const maxName = 200

// validName accepts printable names of at most maxName bytes: names are shown and audited.
func validName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// securityHeaders are set on every console answer: no script at all, no framing, no caching, no
// sniffing, and the Referer kept to this origin.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// sameOrigin refuses a state change a browser says comes from another site: an Origin header
// that is not this host's, or Sec-Fetch-Site cross-site. Requests without either (curl) pass to
// the CSRF token check.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		return false
	}
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return host == r.Host
}
