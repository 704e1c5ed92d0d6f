package config

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Console is the web console on the HTTP listener (/console/). It is on when a session key is set.
// People sign in either with a bearer token of http.token, write_token or read_token, exchanged for
// a session cookie, or through an authenticating proxy (oauth2-proxy) that sends their identity in
// a header from one of TrustedProxies.
type Console struct {
	SessionKey     string   `yaml:"session_key" secret:"true"`
	SessionKeyFile string   `yaml:"session_key_file" help:"file holding the key (32+ characters) that signs console sessions and CSRF tokens; every replica needs the same one; without it the console at /console/ is off"`
	SessionTTL     Duration `yaml:"session_ttl" help:"how long a console sign-in with a token lasts"`
	Approvers      []string `yaml:"approvers" help:"identities from the authenticating proxy (user_header) allowed to approve or refuse pending revokes and rollbacks; sessions of the admin token (http.token) may too"`
	TrustedProxies []string `yaml:"trusted_proxies" help:"addresses or CIDR prefixes of the authenticating proxy; user_header is believed only on connections from them; empty: identity headers are ignored"`
	UserHeader     string   `yaml:"user_header" help:"request header in which the authenticating proxy names the signed-in person (oauth2-proxy: X-Forwarded-Email or X-Forwarded-User)"`
}

func defaultConsole() Console {
	return Console{SessionTTL: Duration(12 * time.Hour), UserHeader: "X-Forwarded-Email"}
}

// Enabled says whether the console is served.
func (c Console) Enabled() bool { return c.SessionKey != "" }

// TrustedPrefixes are TrustedProxies parsed (validate refuses any that does not parse).
func (c Console) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads an address (a one-address prefix) or a CIDR prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func (c Console) validate(listen string) []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("console.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.SessionKey != "" {
		errs = append(errs, secretLength("console.session_key", c.SessionKey)...)
		if listen == "" {
			bad("session_key", "the console is served on http.listen, which is empty")
		}
	}
	if c.SessionTTL < Duration(5*time.Minute) || c.SessionTTL > Duration(7*24*time.Hour) {
		bad("session_ttl", "%s: want 5m to 168h", c.SessionTTL)
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%q: want an address (10.0.0.7) or a CIDR prefix (10.0.0.0/24)", s)
		}
	}
	if h := http.CanonicalHeaderKey(strings.TrimSpace(c.UserHeader)); h == "" || strings.ContainsAny(h, " :\t") {
		bad("user_header", "%q: want a header name such as X-Forwarded-Email", c.UserHeader)
	}
	for i, a := range c.Approvers {
		if strings.TrimSpace(a) == "" {
			bad(fmt.Sprintf("approvers[%d]", i), "empty")
		}
	}
	if len(c.Approvers) > 0 && len(c.TrustedProxies) == 0 {
		bad("approvers", "approvers are identities from the authenticating proxy: set console.trusted_proxies too")
	}
	return errs
}
