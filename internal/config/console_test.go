package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestConsoleSettingsAreValidatedByPath(t *testing.T) {
	const key = "KEYWATCH_CONSOLE_SESSION_KEY=0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"KEYWATCH_CONSOLE_SESSION_KEY=hunter2"}, "console.session_key: 7 characters, want at least 32"},
		{[]string{key, "KEYWATCH_HTTP_LISTEN="}, "console.session_key: the console is served on http.listen, which is empty"},
		{[]string{key, "KEYWATCH_CONSOLE_SESSION_TTL=1m"}, "console.session_ttl: 1m0s: want 5m to 168h"},
		{[]string{key, "KEYWATCH_CONSOLE_TRUSTED_PROXIES=10.0.0.0/8,proxy.internal"}, `console.trusted_proxies[1]: "proxy.internal": want an address`},
		{[]string{key, "KEYWATCH_CONSOLE_USER_HEADER=X Email"}, `console.user_header: "X Email": want a header name`},
		{[]string{key, "KEYWATCH_CONSOLE_APPROVERS=alice@example.com"}, "console.approvers: approvers are identities from the authenticating proxy: set console.trusted_proxies too"},
	} {
		_, err := Load("", append([]string{validKey}, c.env...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: Load error = %v\nwant it to contain %q", c.env, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: the error shows the key: %v", c.env, err)
		}
	}
	cfg, err := Load(writeFile(t, "console:\n  trusted_proxies: [10.0.3.9/24, 127.0.0.2, '::1']\n  approvers: [alice@example.com]\n"),
		[]string{validKey, key})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.3.0/24"), netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("::1/128")}
	if got := cfg.Console.TrustedPrefixes(); !slices.Equal(got, want) || !cfg.Console.Enabled() {
		t.Errorf("trusted prefixes %v (enabled %v), want %v", got, cfg.Console.Enabled(), want)
	}
	if off, _ := Load("", []string{validKey}); off.Console.Enabled() {
		t.Error("the console is on without a session key")
	}
}
