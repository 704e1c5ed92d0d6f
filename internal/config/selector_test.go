package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/label"
)

// TestSelectorForms: every selector of the file compiles at load into label matchers, in today's
// forms and in the string form beside them, and each selects what it says.
func TestSelectorForms(t *testing.T) {
	soon := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
	yaml := `
slack:
  routes:
    - {channel: "#pay", matchers: ['client_id=~"pay-.*"', 'severity!="info"']}
    - {channel: "#leaks", detector: ["leak*"], severity: [critical, warning], continue: true}
    - {channel: "#acme", client: ["acme-*", "globex"]}
revoke:
  protected_keys: ["kid_root_*", "projects/*"]
  policies:
    - {matchers: ['detector=~"leak.*"', 'severity="critical"'], mode: auto}
    - {detector: "spike", keys: "kid_pay_*", mode: approve}
    - {keys: "kid_*", matchers: ['client_id!~"test-.*"'], mode: dry-run}
rollback:
  critical_clients: ["pay-*"]
  policies: [{clients: "pay-*", matchers: ['key_id=~"kid_pay_.*"'], mode: auto}]
alerting:
  inhibit:
    - {source_matchers: ['detector="leak_report"'], target: {detector: "leak*"}, target_matchers: ['severity!="critical"'], equal: [key_id]}
  silences:
    - {matchers: {key_id: "kid_old", detector: "ling*"}, ends_at: ` + soon + `, created_by: ana, comment: migration}
`
	cfg, err := Load(writeFile(t, yaml), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	// Compiled once, by Load.
	for name, done := range map[string]bool{
		"route": cfg.Slack.Routes[0].selector != nil, "revoke policy": cfg.Revoke.Policies[0].selector != nil,
		"protected_keys": cfg.Revoke.protected != nil, "rollback policy": cfg.Rollback.Policies[0].selector != nil,
		"critical_clients": cfg.Rollback.critical != nil, "inhibit": cfg.Alerting.Inhibit[0].source != nil && cfg.Alerting.Inhibit[0].target != nil,
		"silence": cfg.Alerting.Silences[0].selector != nil,
	} {
		if !done {
			t.Errorf("%s: not compiled by Load", name)
		}
	}

	routes := cfg.Slack.Routing()
	for _, c := range []struct {
		set  label.Set
		want []string
	}{
		{label.Set{"client_id": "pay-eu", "severity": "warning", "detector": "spike"}, []string{"#pay"}},
		{label.Set{"client_id": "pay-eu", "severity": "info", "detector": "spike"}, nil},
		{label.Set{"client_id": "acme-web", "severity": "critical", "detector": "leak"}, []string{"#leaks", "#acme"}},
		{label.Set{"client_id": "globex", "severity": "info", "detector": "leak"}, []string{"#acme"}},
		{label.Set{"client_id": "globex2", "severity": "info", "detector": "hygiene"}, nil},
	} {
		if got := routes.Channels(c.set); !slices.Equal(got, c.want) {
			t.Errorf("routes for %v: %q, want %q", c.set, got, c.want)
		}
	}

	policy := func(set label.Set) string {
		for _, p := range cfg.Revoke.Policies {
			if p.Selector().Matches(set) {
				return p.Mode
			}
		}
		return cfg.Revoke.DefaultMode
	}
	for _, c := range []struct {
		set  label.Set
		want string
	}{
		{label.Set{"detector": "leak", "severity": "critical", "key_id": "k"}, "auto"},
		{label.Set{"detector": "leak_report", "severity": "warning", "key_id": "k"}, "off"},
		{label.Set{"detector": "spike", "key_id": "kid_pay_1"}, "approve"},
		{label.Set{"detector": "spike", "key_id": "kid_web_1", "client_id": "web"}, "dry-run"},
		{label.Set{"detector": "spike", "key_id": "kid_web_1", "client_id": "test-1"}, "off"},
	} {
		if got := policy(c.set); got != c.want {
			t.Errorf("revoke policy for %v: %s, want %s", c.set, got, c.want)
		}
	}
	for key, want := range map[string]bool{"kid_root_a/b": true, "projects/p/keys/k": true, "kid_live": false} {
		if got := label.MatchesAny(cfg.Revoke.Protected(), label.Set{"key_id": key}); got != want {
			t.Errorf("protected %q: %v, want %v", key, got, want)
		}
	}
	rp := cfg.Rollback.Policies[0].Selector()
	if !rp.Matches(label.Set{"client_id": "pay-eu", "key_id": "kid_pay_1"}) || rp.Matches(label.Set{"client_id": "pay-eu", "key_id": "kid_web_1"}) {
		t.Errorf("rollback policy %s", rp)
	}
	if !label.MatchesAny(cfg.Rollback.Critical(), label.Set{"client_id": "pay-eu"}) || label.MatchesAny(cfg.Rollback.Critical(), label.Set{"client_id": "acme"}) {
		t.Error("critical_clients")
	}
	in := cfg.Alerting.Inhibit[0]
	if !in.SourceSelector().Matches(label.Set{"detector": "leak_report"}) || in.SourceSelector().Matches(label.Set{"detector": "leak"}) {
		t.Errorf("inhibit source %s", in.SourceSelector())
	}
	if !in.TargetSelector().Matches(label.Set{"detector": "leak", "severity": "warning"}) || in.TargetSelector().Matches(label.Set{"detector": "leak", "severity": "critical"}) {
		t.Errorf("inhibit target %s", in.TargetSelector())
	}
	s := cfg.Alerting.Silences[0].Selector()
	if !s.Matches(label.Set{"key_id": "kid_old", "detector": "lingering"}) || s.Matches(label.Set{"key_id": "kid_old", "detector": "spike"}) {
		t.Errorf("silence %s", s)
	}

	// A value changed after Load is compiled when read; one built by hand too.
	cfg.Revoke.ProtectedKeys = []string{"kid_x"}
	if !label.MatchesAny(cfg.Revoke.Protected(), label.Set{"key_id": "kid_x"}) || label.MatchesAny(cfg.Revoke.Protected(), label.Set{"key_id": "kid_root_a"}) {
		t.Error("protected_keys changed after Load: the old ones still apply")
	}
	cfg.Revoke.Policies[1].Keys = "kid_other_*"
	if cfg.Revoke.Policies[1].Selector().Matches(label.Set{"detector": "spike", "key_id": "kid_pay_1"}) {
		t.Error("a policy changed after Load: the old selector still applies")
	}
	hand := RevokePolicy{Detector: "leak*", Mode: "auto"}
	if !hand.Selector().Matches(label.Set{"detector": "leak_report"}) || hand.Selector().Matches(label.Set{"detector": "spike"}) {
		t.Error("a policy built by hand")
	}
}

// TestSelectorErrors: a bad matcher fails the load, naming its field.
func TestSelectorErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"slack:\n  routes: [{channel: \"#a\", matchers: ['client_id=~\"a.*\"', 'severity=critical']}]\n",
			`slack.routes[0].matchers[1]: "severity=critical": the value is not in double quotes`},
		{"slack:\n  routes: [{channel: \"#a\", severity: [urgent]}]\n", `slack.routes[0].severity: "urgent": want info, warning or critical`},
		{"revoke:\n  policies: [{matchers: ['detector=~\"(leak\"'], mode: auto}]\n",
			`revoke.policies[0].matchers[0]: "detector=~\"(leak\"": "(leak" is not a valid regular expression: missing closing )`},
		{"revoke:\n  policies: [{mode: auto}, {matchers: ['keyid=\"kid_*\"'], mode: auto}]\n",
			`revoke.policies[1].matchers[0]: no such label "keyid" (want detector, severity, key_id, client_id, rotation_id, step, signals)`},
		{"rollback:\n  policies: [{matchers: ['key_id=\"kid_[\"'], mode: auto}]\n", `rollback.policies[0].matchers[0]: "key_id=\"kid_[\"": "kid_[" is not a valid glob`},
		{"alerting:\n  inhibit: [{source_matchers: ['detector'], target: {detector: spike}}]\n", `alerting.inhibit[0].source_matchers[0]: "detector": no operator`},
		{"alerting:\n  inhibit: [{source: {detector: spike}, target: {keyid: x}}]\n", `alerting.inhibit[0].target.keyid: no such label "keyid"`},
		{"alerting:\n  silences: [{matchers: {keyid: kid_old}, ends_at: 2030-01-01T00:00:00Z, created_by: a, comment: c}]\n",
			`alerting.silences[0].matchers.keyid: no such label "keyid"`},
	} {
		_, err := Load(writeFile(t, c.yaml), []string{validKey})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

// TestSelectorsReloadUnchanged: the same file loaded twice is the same configuration, compiled
// selectors included (a reload that changes nothing says so); a changed selector is a change.
func TestSelectorsReloadUnchanged(t *testing.T) {
	base := "slack:\n  routes: [{channel: \"#a\", detector: [leak*, spike], matchers: ['client_id=~\"a.*\"']}]\n" +
		"revoke:\n  protected_keys: [\"kid_root_*\"]\n  policies: [{matchers: ['detector=~\"leak.*\"'], mode: auto}]\n"
	a, err := Load(writeFile(t, base), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(writeFile(t, base), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(a, b); len(got) != 0 {
		t.Errorf("the same file loaded twice: changed %q", got)
	}
	c, err := Load(writeFile(t, strings.Replace(base, `leak.*`, `leak_.*`, 1)), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(a, c); !slices.Equal(got, []string{"revoke.policies"}) {
		t.Errorf("a policy's matcher changed: changed %q, want revoke.policies", got)
	}
}
