package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// noRotationLookback is how far back Readiness looks for callers of a key that no rotation is
// retiring: a key used within it is not safe to retire. Thirty days covers monthly jobs.
const noRotationLookback = 30 * 24 * time.Hour

// Callers without a client are (IP, user agent) pairs, and whoever calls chooses both: a key tried
// with 5,000 user agents has 5,000 of them. So the lingering detector reports them in one finding
// per rotation, whatever their number (its fingerprint has unidentifiedCallers in the client's
// place, and stays the same as they come and go), and a readiness answer lists at most
// maxListedCallers callers (identified clients first) and counts the rest.
const (
	unidentifiedCallers = "(unidentified callers)"
	maxListedCallers    = 50
	// topCounts is how many addresses and user agents a caller's TopIPs and TopUserAgents keep
	// (selectCallers keeps as many).
	topCounts = 5
)

// Lingering finds callers that still use a key being retired, and answers whether a key is safe
// to retire (Readiness).
type Lingering struct {
	conn driver.Conn
	cfg  config.Lingering
}

// NewLingering returns the detector.
func NewLingering(conn driver.Conn, cfg config.Lingering) *Lingering {
	return &Lingering{conn: conn, cfg: cfg}
}

// Name is the detector's name in findings, metrics and config.
func (d *Lingering) Name() string { return "lingering" }

// Readiness answers whether keyID can be retired (or, once retired, whether anything still calls
// it) as of now. Its JSON is the HTTP response body and `keywatch readiness --format json` output.
type Readiness struct {
	KeyID      string     `json:"key_id"`
	Safe       bool       `json:"safe"`
	Reason     string     `json:"reason"` // one line: why safe or unsafe
	State      string     `json:"state"`  // rotation.State, "unknown" when the key has no lifecycle events
	RotationID string     `json:"rotation_id,omitempty"`
	NewKeyID   string     `json:"new_key_id,omitempty"`
	Deadline   *time.Time `json:"deadline,omitempty"`
	Remaining  []Caller   `json:"remaining"` // never null; at most maxListedCallers (50), clients first
	// Unlisted is how many more callers remain than Remaining lists.
	Unlisted  int       `json:"unlisted,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// Detect reports, for every rotation whose deadline is within InfoBefore (or passed) and every
// rotation finished within AfterRetired, each client that still depends on the old key (see
// remaining), and in one finding the callers without a client that do (see unidentified).
// Severity follows the deadline: within CriticalBefore or passed critical, within WarningBefore
// warning, within InfoBefore info; any use of the old key after it was retired or revoked is
// critical. Rotations without a deadline are left to Readiness.
func (d *Lingering) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	m, err := rotation.Load(ctx, d.conn)
	if err != nil {
		return nil, err
	}
	var watched []*rotation.Rotation
	for _, k := range m.SortedKeys() {
		if r := k.Rotation; r != nil && d.watched(r, now) {
			watched = append(watched, r)
		}
	}
	if len(watched) == 0 {
		return nil, nil
	}
	u, err := d.callers(ctx, windows(watched))
	if err != nil {
		return nil, err
	}
	var out []finding.Finding
	for _, r := range watched {
		var anonymous []Caller
		for _, c := range d.remaining(r, now, u) {
			if c.ClientID == "" {
				anonymous = append(anonymous, c)
				continue
			}
			out = append(out, d.finding(r, c, c.name(), false, now))
		}
		if len(anonymous) > 0 {
			out = append(out, d.unidentified(r, anonymous, now))
		}
	}
	return out, nil
}

// watched reports whether r can produce findings as of now.
func (d *Lingering) watched(r *rotation.Rotation, now time.Time) bool {
	if !r.Running() {
		return now.Sub(r.Finished) <= time.Duration(d.cfg.AfterRetired)
	}
	return !r.Deadline.IsZero() && r.Deadline.Sub(now) <= time.Duration(d.cfg.InfoBefore)
}

// windows returns where each key's traffic is read from: since(r) of the rotations it is in.
// A key that is the new key of one watched rotation and the old key of another (a chain) is read
// from the window of the one retiring it, so its counts as the old key are right; its share as
// the new key of the earlier rotation then covers only the later one's window.
func windows(rs []*rotation.Rotation) map[string]time.Time {
	from := map[string]time.Time{}
	for _, r := range rs {
		if t, ok := from[r.NewKeyID]; !ok || since(r).Before(t) {
			from[r.NewKeyID] = since(r)
		}
	}
	for _, r := range rs {
		from[r.OldKeyID] = since(r)
	}
	return from
}

// since is where r's traffic is looked at from: its start while it runs, then its end.
func since(r *rotation.Rotation) time.Time {
	if r.Running() {
		return r.Started
	}
	return r.Finished
}

// Readiness answers whether keyID can be retired (or, once retired, whether anything still calls
// it) as of now. A key a rotation retires is safe when no caller remains (see remaining); a key
// no rotation retires is safe when nothing called it within noRotationLookback (since it was
// retired or revoked, for such a key). A key that neither lifecycle events nor traffic know is
// an ErrUnknownKey error.
func (d *Lingering) Readiness(ctx context.Context, now time.Time, keyID string) (Readiness, error) {
	m, err := rotation.Load(ctx, d.conn)
	if err != nil {
		return Readiness{}, fmt.Errorf("detect: readiness of %s: %w", keyID, err)
	}
	return d.ReadinessIn(ctx, m, now, keyID)
}

// ReadinessIn is Readiness with the rotation model m already read, for callers that ask about
// many keys at once (the rotation digest).
func (d *Lingering) ReadinessIn(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (Readiness, error) {
	rep, err := d.readiness(ctx, m, now, keyID)
	if err != nil {
		return Readiness{}, fmt.Errorf("detect: readiness of %s: %w", keyID, err)
	}
	return rep, nil
}

func (d *Lingering) readiness(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (Readiness, error) {
	rep := Readiness{KeyID: keyID, State: "unknown", Remaining: []Caller{}, CheckedAt: now}
	k := m.Key(keyID)
	if k != nil {
		rep.State = string(k.State)
	}
	if k != nil && k.Rotation != nil {
		r := k.Rotation
		rep.RotationID, rep.NewKeyID = r.ID, r.NewKeyID
		if !r.Deadline.IsZero() {
			deadline := r.Deadline
			rep.Deadline = &deadline
		}
		u, err := d.callers(ctx, windows([]*rotation.Rotation{r}))
		if err != nil {
			return Readiness{}, err
		}
		remaining := d.remaining(r, now, u)
		rep.Remaining, rep.Unlisted = listed(remaining, maxListedCallers)
		rep.Safe = len(remaining) == 0
		switch {
		case r.Running() && rep.Safe:
			rep.Reason = fmt.Sprintf("every caller of %s since the rotation started has moved to %s and not used %s for %s",
				keyID, r.NewKeyID, keyID, time.Duration(d.cfg.QuietFor))
		case r.Running():
			rep.Reason = fmt.Sprintf("%s is still used by %s not yet on %s", keyID, callersPhrase(remaining, now), r.NewKeyID)
		case rep.Safe:
			rep.Reason = fmt.Sprintf("%s was %s %s ago and no caller depends on it since", keyID, step(r), Span(now.Sub(r.Finished)))
		default:
			rep.Reason = fmt.Sprintf("%s was %s %s ago but is still used by %s", keyID, step(r), Span(now.Sub(r.Finished)), callersPhrase(remaining, now))
		}
		return rep, nil
	}

	// No rotation retires the key: anything that called it lately depends on it.
	from, within := now.Add(-noRotationLookback), "in the last "+Span(noRotationLookback)
	if k != nil && (k.State == rotation.Retired || k.State == rotation.Revoked) {
		from, within = k.Updated, fmt.Sprintf("since it was %s %s ago", k.State, Span(now.Sub(k.Updated)))
	}
	u, err := d.callers(ctx, map[string]time.Time{keyID: from})
	if err != nil {
		return Readiness{}, err
	}
	remaining := []Caller{}
	for _, c := range u[keyID] {
		if !c.LastSeen.Before(from) {
			remaining = append(remaining, *c)
		}
	}
	sortCallers(remaining)
	rep.Remaining, rep.Unlisted = listed(remaining, maxListedCallers)
	if k == nil && len(remaining) == 0 {
		var n uint64
		if err := d.conn.QueryRow(ctx, selectKeyUsed, keyID).Scan(&n); err != nil {
			return Readiness{}, fmt.Errorf("read key_usage: %w", err)
		}
		if n == 0 {
			return Readiness{}, ErrUnknownKey
		}
	}
	rep.Safe = len(remaining) == 0
	if rep.Safe {
		rep.Reason = fmt.Sprintf("no rotation retires %s and nothing called it %s", keyID, within)
	} else {
		rep.Reason = fmt.Sprintf("no rotation started, and %s is used by %s %s", keyID, callersPhrase(remaining, now), within)
	}
	return rep, nil
}
