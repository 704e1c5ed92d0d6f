package detect

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// selectKeyUsage reads when every key seen in traffic was first and last used. key_usage holds one
// row per key once merged, so the whole table is small.
const selectKeyUsage = `
SELECT key_id, anyLast(client_id), sum(requests), min(first_seen), max(last_seen)
FROM key_usage
GROUP BY key_id`

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

// HygieneEvidence is what a hygiene finding shows about its key.
type HygieneEvidence struct {
	Kind      string    `json:"kind"` // policy_age, unused or expiring
	KeyID     string    `json:"key_id"`
	ClientID  string    `json:"client_id,omitempty"`
	State     string    `json:"state"`
	Created   time.Time `json:"created,omitzero"`    // from key.created, or the rotation that introduced the key
	FirstSeen time.Time `json:"first_seen,omitzero"` // first request with the key
	LastUsed  time.Time `json:"last_used,omitzero"`  // last request with the key; zero: never used
	// AgeDays is the key's age (from Created, else FirstSeen); UnusedDays how long since its last
	// request (or since Created when it was never used).
	AgeDays    float64 `json:"age_days"`
	UnusedDays float64 `json:"unused_days,omitempty"`
	Requests   uint64  `json:"requests"`
	// LimitDays is the policy limit that was exceeded (max_key_age, unused_after or expiring_within).
	LimitDays float64 `json:"limit_days"`
	// ExpiresAt is when the key stops working by itself (lifecycle events); DaysLeft until then,
	// negative once it passed. Set for the expiring kind.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	DaysLeft  float64    `json:"days_left,omitempty"`
	// FoldedFindings is, in a finding the engine folded others into, how many it stands for
	// (MaxFindingsPerKey, MaxFindingsPerRun); the rest of the evidence is the first one's.
	FoldedFindings int `json:"folded_findings,omitempty"`
}

type keyUsage struct {
	clientID            string
	requests            uint64
	firstSeen, lastSeen time.Time
}

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

func (d *Hygiene) usage(ctx context.Context) (map[string]keyUsage, error) {
	rows, err := d.conn.Query(ctx, selectKeyUsage)
	if err != nil {
		return nil, fmt.Errorf("read key_usage: %w", err)
	}
	defer rows.Close()
	out := map[string]keyUsage{}
	for rows.Next() {
		var id string
		var u keyUsage
		if err := rows.Scan(&id, &u.clientID, &u.requests, &u.firstSeen, &u.lastSeen); err != nil {
			return nil, fmt.Errorf("read key_usage: %w", err)
		}
		u.firstSeen, u.lastSeen = u.firstSeen.UTC(), u.lastSeen.UTC()
		out[id] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read key_usage: %w", err)
	}
	return out, nil
}

// judge returns the findings for one active key; clientID falls back to the client seen in traffic.
func (d *Hygiene) judge(now time.Time, keyID, clientID, state string, created time.Time, u keyUsage) []finding.Finding {
	if clientID == "" {
		clientID = u.clientID
	}
	born := created
	if born.IsZero() {
		born = u.firstSeen
	}
	if born.IsZero() {
		return nil // no age to judge: neither created nor used
	}
	ev := HygieneEvidence{
		KeyID: keyID, ClientID: clientID, State: state, Created: created, FirstSeen: u.firstSeen,
		LastUsed: u.lastSeen, AgeDays: hygieneDays(now.Sub(born)), Requests: u.requests,
	}
	label := "key " + keyID
	if clientID != "" {
		label = clientID + " " + label
	}
	var out []finding.Finding
	maxAge := time.Duration(d.cfg.MaxKeyAge)
	if age := now.Sub(born); age > maxAge {
		e := ev
		e.Kind, e.LimitDays = hygienePolicyAge, hygieneDays(maxAge)
		f := d.finding(now, e, age, maxAge)
		f.Summary = fmt.Sprintf("%s is %.0f days old and no rotation has started (policy: rotate within %.0f days)",
			label, e.AgeDays, e.LimitDays)
		out = append(out, f)
	}
	unusedAfter := time.Duration(d.cfg.UnusedAfter)
	idleSince := u.lastSeen
	if idleSince.IsZero() {
		idleSince = born
	}
	if idle := now.Sub(idleSince); idle > unusedAfter {
		e := ev
		e.Kind, e.UnusedDays, e.LimitDays = hygieneUnused, hygieneDays(idle), hygieneDays(unusedAfter)
		f := d.finding(now, e, idle, unusedAfter)
		if u.lastSeen.IsZero() {
			f.Summary = fmt.Sprintf("%s has never been used in the %.0f days since it was created; revoke it if it is not needed",
				label, e.UnusedDays)
		} else {
			f.Summary = fmt.Sprintf("%s has not been used for %.0f days (last used %s); revoke it if it is not needed",
				label, e.UnusedDays, u.lastSeen.Format(time.DateOnly))
		}
		out = append(out, f)
	}
	return out
}

// expiring reports an active key whose expires_at is within detect.hygiene.expiring_within, or
// passed, while no rotation has started: its clients break when it expires. Warning, critical from
// a day before expiry.
func (d *Hygiene) expiring(now time.Time, k *rotation.Key, u keyUsage) (finding.Finding, bool) {
	within := time.Duration(d.cfg.ExpiringWithin)
	left := k.ExpiresAt.Sub(now)
	if within <= 0 || k.ExpiresAt.IsZero() || left > within {
		return finding.Finding{}, false
	}
	clientID := cmp.Or(k.ClientID, u.clientID)
	expires := k.ExpiresAt
	e := HygieneEvidence{
		Kind: hygieneExpiring, KeyID: k.ID, ClientID: clientID, State: string(k.State), Created: k.Created,
		FirstSeen: u.firstSeen, LastUsed: u.lastSeen, Requests: u.requests, LimitDays: hygieneDays(within),
		ExpiresAt: &expires, DaysLeft: hygieneDays(left),
	}
	if born := cmp.Or(k.Created, u.firstSeen); !born.IsZero() {
		e.AgeDays = hygieneDays(now.Sub(born))
	}
	f := finding.New(d.Name(), now, k.ID, clientID, "")
	f.Fingerprint = finding.Fingerprint(d.Name(), k.ID, clientID, hygieneExpiring)
	f.Severity, f.Evidence, f.Fields = finding.Warning, e, e.fields()
	if left < 24*time.Hour {
		f.Severity = finding.Critical
	}
	// 1 at the edge of the window, growing as expiry nears (2 at expiry, more after it).
	f.Score = 1 + float64(within-left)/float64(within)
	label := strings.TrimSpace(clientID + " key " + k.ID)
	if left > 0 {
		f.Summary = fmt.Sprintf("%s expires in %s (%s) and no rotation has started; its callers break then",
			label, Span(left), expires.UTC().Format("2006-01-02 15:04 UTC"))
	} else {
		f.Summary = fmt.Sprintf("%s expired %s ago (%s) and no rotation has started", label, Span(-left), expires.UTC().Format("2006-01-02 15:04 UTC"))
	}
	return f, true
}

// finding builds a finding of one kind. Its fingerprint takes the kind in the rotation slot, so a
// key has one fingerprint per kind; the finding itself names no rotation. Severity is info, and
// warning past twice the limit. Score is how many times over the limit the key is (1.5 = half as
// long again as the policy allows).
func (d *Hygiene) finding(now time.Time, e HygieneEvidence, over, limit time.Duration) finding.Finding {
	f := finding.New(d.Name(), now, e.KeyID, e.ClientID, "")
	f.Fingerprint = finding.Fingerprint(d.Name(), e.KeyID, e.ClientID, e.Kind)
	f.Severity = finding.Info
	if over > 2*limit {
		f.Severity = finding.Warning
	}
	f.Score = float64(over) / float64(limit)
	f.Evidence, f.Fields = e, e.fields()
	return f
}

func hygieneDays(d time.Duration) float64 { return d.Hours() / 24 }
