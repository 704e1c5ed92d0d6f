package config

import (
	"strings"
	"testing"
)

// Every rollback setting that is wrong is reported with its path.
func TestRollbackValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"rollback:\n  default_mode: dry-run\n", `rollback.default_mode: "dry-run": want one of off, approve, auto`},
		{"rollback:\n  default_action: delete\n", `rollback.default_action: "delete": want one of extend_grace, reactivate`},
		{"rollback:\n  policies: [{clients: acme, mode: sometimes}]\n", `rollback.policies[0].mode: "sometimes"`},
		{"rollback:\n  policies: [{mode: auto, action: revoke}]\n", `rollback.policies[0].action: "revoke"`},
		{"rollback:\n  policies: [{mode: auto}, {rotation: \"[\", mode: auto}]\n", `rollback.policies[1].rotation: "["`},
		{"rollback:\n  critical_clients: [\"a\", \"[\"]\n", `rollback.critical_clients[1]: "["`},
		{"rollback:\n  extend_by: 10s\n", "rollback.extend_by: 10s: want at least 1m"},
	} {
		_, err := Load(writeFile(t, c.yaml), []string{validKey})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
	cfg, err := Load(writeFile(t, "rollback:\n  default_mode: approve\n  critical_clients: [\"pay-*\"]\n  policies: [{rotation: \"kid_a>*\", clients: \"pay-*\", mode: auto, action: reactivate}]\n"),
		[]string{validKey, "KEYWATCH_ROLLBACK_EXTEND_BY=48h"})
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Rollback; r.DefaultMode != "approve" || r.ExtendBy.String() != "48h0m0s" || r.Policies[0].Action != "reactivate" || r.DefaultAction != "extend_grace" {
		t.Errorf("loaded %+v", r)
	}
}
