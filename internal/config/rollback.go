package config

import (
	"fmt"
	"strings"
	"time"
)

// Rollback offers a graceful rollback when a failure spike follows a retire or revoke step: the
// old key's grace period is extended (extend_grace) or the key is reactivated (reactivate), through
// the revoke webhook (revoke.webhook_url and its secret), under policies like revokes'.
type Rollback struct {
	DefaultMode     string           `yaml:"default_mode" help:"policy where none matches: off, approve or auto (auto only for rollback.critical_clients; others wait for approval)"`
	DefaultAction   string           `yaml:"default_action" help:"what a rollback does where the policy does not say: extend_grace or reactivate"`
	Policies        []RollbackPolicy `yaml:"policies" help:"first match by rotation and client pattern wins (YAML only)"`
	ExtendBy        Duration         `yaml:"extend_by" help:"extend_grace moves the old key's grace deadline to the later of it and now, plus this"`
	CriticalClients []string         `yaml:"critical_clients" help:"client id globs whose rollbacks may run without approval (mode auto)"`
	LeakLookback    Duration         `yaml:"leak_lookback" help:"a key with a leak finding this recent (or an open leak alert) is never rolled back"`

	critical *compiled // Critical
}

// RollbackPolicy says what happens to failure spikes of rotations matching Rotation for clients
// matching Clients that every one of Matchers matches.
type RollbackPolicy struct {
	Rotation string `yaml:"rotation" help:"rotation id glob (old>new); empty: any"`
	Clients  string `yaml:"clients" help:"client id glob (the client the spike broke); empty: any"`
	// Matchers are label matchers in the string form (package label): key_id=~"kid_pay_.*".
	Matchers []string `yaml:"matchers,omitempty" help:"label matchers, e.g. key_id=~\"kid_pay_.*\"; every one must match"`
	Mode     string   `yaml:"mode" help:"off, approve or auto"`
	Action   string   `yaml:"action" help:"extend_grace or reactivate; empty: rollback.default_action"`

	selector *compiled // Selector
}

// RollbackModes are the rollback policy modes; RollbackActions what a rollback does.
var (
	RollbackModes   = []string{"off", "approve", "auto"}
	RollbackActions = []string{"extend_grace", "reactivate"}
)

func defaultRollback() Rollback {
	return Rollback{
		DefaultMode: "off", DefaultAction: "extend_grace",
		ExtendBy: Duration(24 * time.Hour), LeakLookback: Duration(7 * 24 * time.Hour),
	}
}

func (r Rollback) validate() []error {
	var errs []error
	bad := func(path string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if !contains(RollbackModes, r.DefaultMode) {
		bad("rollback.default_mode", "%q: want one of %s", r.DefaultMode, strings.Join(RollbackModes, ", "))
	}
	if !contains(RollbackActions, r.DefaultAction) {
		bad("rollback.default_action", "%q: want one of %s", r.DefaultAction, strings.Join(RollbackActions, ", "))
	}
	for i, p := range r.Policies {
		if !contains(RollbackModes, p.Mode) {
			bad(fmt.Sprintf("rollback.policies[%d].mode", i), "%q: want one of %s", p.Mode, strings.Join(RollbackModes, ", "))
		}
		if p.Action != "" && !contains(RollbackActions, p.Action) {
			bad(fmt.Sprintf("rollback.policies[%d].action", i), "%q: want one of %s (or empty)", p.Action, strings.Join(RollbackActions, ", "))
		}
	} // what policies select, and critical_clients, are checked by compileSelectors
	if r.ExtendBy < Duration(time.Minute) {
		bad("rollback.extend_by", "%s: want at least 1m", r.ExtendBy)
	}
	if r.LeakLookback < 0 {
		bad("rollback.leak_lookback", "%s: must not be negative", r.LeakLookback)
	}
	return errs
}
