package detect

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// The kinds of hygiene finding; each key gets at most one finding of each.
const (
	hygienePolicyAge = "policy_age" // active, older than MaxKeyAge, no rotation started
	hygieneUnused    = "unused"     // active, not used for UnusedAfter
	hygieneExpiring  = "expiring"   // active, expires_at within ExpiringWithin (or passed), no rotation started
	// refused on the same route(s) on ScopeStandingDays days of ScopeHistory, the last day included
	hygieneStandingForbidden = "standing_forbidden"
)

// Hygiene reports active keys that break the rotation policy: older than the maximum age with no
// rotation started, unused for a long time, or about to expire (expires_at) with no rotation
// started. It runs daily, so that teams have per-key evidence of their rotation policy for audits.
// With the scope settings of the leak detector (WithScopes) it also reports keys refused
// (forbidden) on the same routes day after day: a standing misconfiguration the leak detector
// leaves out of scope probing, reported here once per key until it stops.
type Hygiene struct {
	conn driver.Conn
	// models loads the rotation model (shared with the other detectors by All).
	models *rotation.Models
	cfg    config.Hygiene
	// Standing refusals: detect.leak.scope_history and scope_standing_days (0: not judged), and
	// detect.leak.route_scopes to name the scope a route needs.
	scopeHistory time.Duration
	standingDays int
	rules        []config.RouteScopeRule
}

// NewHygiene returns the detector.
func NewHygiene(conn driver.Conn, cfg config.Hygiene) *Hygiene {
	return &Hygiene{conn: conn, models: rotation.NewModels(conn), cfg: cfg}
}

// WithScopes makes the detector report standing refusals as the leak detector configured by leak
// judges them (a validated configuration: route_scopes that do not compile name no scope).
func (d *Hygiene) WithScopes(leak config.Leak) *Hygiene {
	d.scopeHistory, d.standingDays = time.Duration(leak.ScopeHistory), leak.ScopeStandingDays
	d.rules, _ = leak.RouteScopeRules()
	return d
}

// Name is the detector's name in findings, metrics and config.
func (d *Hygiene) Name() string { return "hygiene" }

// Detect reports every active key that is too old or unused, as of now.
func (d *Hygiene) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	model, err := d.models.Load(ctx)
	if err != nil {
		return nil, err
	}
	usage, err := d.usage(ctx)
	if err != nil {
		return nil, err
	}
	var out []finding.Finding
	for _, k := range model.SortedKeys() {
		if k.State != rotation.Active { // a started rotation is the policy at work; retired keys are done
			continue
		}
		out = append(out, d.judge(now, k.ID, k.ClientID, string(k.State), k.Created, usage[k.ID])...)
		if f, ok := d.expiring(now, k, usage[k.ID]); ok {
			out = append(out, f)
		}
	}
	for id, u := range usage {
		// A key seen only in traffic counts as active. Without a client the gateway could not tell
		// whose it is: mostly bad or made-up keys that failed, which are not keys to rotate.
		if model.Key(id) != nil || u.clientID == "" {
			continue
		}
		out = append(out, d.judge(now, id, u.clientID, string(rotation.Active), time.Time{}, u)...)
	}
	if d.scopeHistory <= 0 || d.standingDays <= 0 {
		return out, nil
	}
	refused, err := d.refusals(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Sorted(maps.Keys(refused)) {
		k := model.Key(id)
		if f, ok := d.standingForbidden(now, k, id, usage[id], refused[id]); ok {
			out = append(out, f)
		}
	}
	return out, nil
}
