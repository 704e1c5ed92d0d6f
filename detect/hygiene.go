package detect

import (
	"context"
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
)

// Hygiene reports active keys that break the rotation policy: older than the maximum age with no
// rotation started, unused for a long time, or about to expire (expires_at) with no rotation started. It runs daily, so that teams have per-key evidence
// of their rotation policy for audits.
type Hygiene struct {
	conn driver.Conn
	cfg  config.Hygiene
}

// NewHygiene returns the detector.
func NewHygiene(conn driver.Conn, cfg config.Hygiene) *Hygiene { return &Hygiene{conn: conn, cfg: cfg} }

// Name is the detector's name in findings, metrics and config.
func (d *Hygiene) Name() string { return "hygiene" }

// Detect reports every active key that is too old or unused, as of now.
func (d *Hygiene) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	model, err := rotation.Load(ctx, d.conn)
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
	return out, nil
}
