package config

import (
	"strings"
	"testing"
)

// Every glob setting is validated with package glob: the path, the pattern and what is wrong with
// it are named; "/" in a pattern is fine (a * crosses it).
func TestGlobValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"revoke:\n  protected_keys: [\"projects/*\", \"kid_[ab]*\"]\n",
			`revoke.protected_keys[1]: "kid_[ab]*" is not a valid glob: [ would start a character class, which keywatch globs do not have; write \[ for a literal [ (at byte 4)`},
		{"revoke:\n  policies: [{keys: \"kid\\\\\", mode: auto}]\n", `revoke.policies[0].keys: "kid\\" is not a valid glob: ends in a lone \`},
		{"revoke:\n  policies: [{detector: \"[leak]\", mode: auto}]\n", `revoke.policies[0].detector: "[leak]" is not a valid glob`},
		{"slack:\n  routes: [{channel: \"#a\", client: [\"acme-*\", \"[x\"]}]\n", `slack.routes[0].client[1]: "[x" is not a valid glob`},
		{"slack:\n  routes: [{channel: \"#a\", detector: [\"[x\"]}]\n", `slack.routes[0].detector[0]: "[x" is not a valid glob`},
		{"alerting:\n  silences: [{matchers: {key_id: \"kid_[\"}, ends_at: 2030-01-01T00:00:00Z, created_by: a, comment: c}]\n",
			`matchers.key_id: "kid_[" is not a valid glob`},
		{"rollback:\n  critical_clients: [\"[\"]\n", `rollback.critical_clients[0]: "[" is not a valid glob`},
	} {
		_, err := Load(writeFile(t, c.yaml), []string{validKey})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	cfg, err := Load(writeFile(t, "revoke:\n  protected_keys: [\"projects/*/keys/*\", \"kid_root_*\", \"kid\\\\[1\\\\]\"]\n"), []string{validKey})
	if err != nil {
		t.Fatalf("valid globs refused: %v", err)
	}
	if got := cfg.Revoke.ProtectedKeys; len(got) != 3 || got[2] != `kid\[1\]` {
		t.Errorf("protected_keys %q", got)
	}
}
