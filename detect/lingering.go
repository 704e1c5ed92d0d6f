package detect

import (
	"context"
	"fmt"
	"maps"
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
	// models loads the rotation model (shared with the other detectors by All).
	models *rotation.Models
	cfg    config.Lingering
}

// NewLingering returns the detector.
func NewLingering(conn driver.Conn, cfg config.Lingering) *Lingering {
	return &Lingering{conn: conn, models: rotation.NewModels(conn), cfg: cfg}
}

// Name is the detector's name in findings, metrics and config.
func (d *Lingering) Name() string { return "lingering" }

// Readiness answers whether keyID can be retired (or, once retired, whether anything still calls
// it) as of now. Its JSON is the HTTP response body and `keywatch readiness --format json` output.
type Readiness struct {
	KeyID string `json:"key_id"`
	// Verdict is VerdictSafe, VerdictUnsafe or VerdictGone; Safe is false only when unsafe.
	Verdict    string     `json:"verdict"`
	Safe       bool       `json:"safe"`
	Reason     string     `json:"reason"` // one line: why safe, unsafe or gone
	State      string     `json:"state"`  // rotation.State, "unknown" when the key has no lifecycle events
	RotationID string     `json:"rotation_id,omitempty"`
	NewKeyID   string     `json:"new_key_id,omitempty"`
	Deadline   *time.Time `json:"deadline,omitempty"`
	Remaining  []Caller   `json:"remaining"` // never null; at most maxListedCallers (50), clients first
	// Unlisted is how many more callers remain than Remaining lists.
	Unlisted int `json:"unlisted,omitempty"`
	// Refused are callers whose every request in the window was refused: they do not depend on
	// the key, and are listed for the record (at most maxListedRefused, latest first);
	// RefusedUnlisted counts the rest.
	Refused         []Caller  `json:"refused,omitempty"`
	RefusedUnlisted int       `json:"refused_unlisted,omitempty"`
	CheckedAt       time.Time `json:"checked_at"`
}

// The verdicts of a readiness answer. Gone is a key already retired or revoked that nothing
// succeeded with since: there is nothing left to retire, and it is as safe as safe.
const (
	VerdictSafe   = "safe"
	VerdictUnsafe = "unsafe"
	VerdictGone   = "gone"
)

// maxListedRefused is how many refused-only callers a readiness answer lists: they are evidence,
// not blockers, and whoever is refused chooses how many of them there are.
const maxListedRefused = 10

// setVerdict fills rep's verdict from whether callers remain, whether any request succeeded in
// the window, and the key's state.
func (rep *Readiness) setVerdict(remaining int, succeeded bool, k *rotation.Key) {
	switch {
	case remaining > 0:
		rep.Verdict, rep.Safe = VerdictUnsafe, false
	case !succeeded && k != nil && (k.State == rotation.Retired || k.State == rotation.Revoked):
		rep.Verdict, rep.Safe = VerdictGone, true
	default:
		rep.Verdict, rep.Safe = VerdictSafe, true
	}
}

// Detect reports, for every rotation whose deadline is within InfoBefore (or passed) and every
// rotation finished within AfterRetired, each client that still depends on the old key (see
// remaining), and in one finding the callers without a client that do (see unidentified).
// Severity follows the deadline: within CriticalBefore or passed critical, within WarningBefore
// warning, within InfoBefore info; any successful use of the old key after it was retired or
// revoked is critical (refused attempts are no finding: see remaining). Rotations without a
// deadline are left to Readiness.
func (d *Lingering) Detect(ctx context.Context, now time.Time) ([]finding.Finding, error) {
	m, err := d.models.Load(ctx)
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
	judgements, err := d.judge(ctx, m, watched, now, false)
	if err != nil {
		return nil, err
	}
	var out []finding.Finding
	for _, r := range watched {
		var anonymous []Caller
		for _, c := range judgements[r.ID].remaining {
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

// judge reads the traffic of the rotations rs (their old keys since(r), the later keys of their
// chains since each started, the rhythm of the old keys' callers over the cadence lookback) and
// judges each one's callers (see remaining), by rotation id: those that remain, and when refused
// is true (readiness lists them; findings do not) those refused on every request. Only the callers
// of the old keys are read, whatever the traffic of their successors.
//
// It reads in two passes, so that what it reads follows the number of callers and not how long a
// rotation has run. The first judges every caller from key_caller_months (when each last called
// and succeeded, and its active hours: one row per caller and month); what is judged needs no
// more. The second reads from key_caller_hours, since(r), only the callers the first reports
// (remaining, and refused when asked for) and those with calls after now (which the months hold
// and the hours up to now do not), and judges them again: the same answer, with the counts the
// findings show.
func (d *Lingering) judge(ctx context.Context, m *rotation.Model, rs []*rotation.Rotation, now time.Time, refused bool) (map[string]judged, error) {
	old, next := map[string]time.Time{}, map[string]time.Time{}
	chains := map[string][]string{} // by rotation id
	later := map[string][]string{}  // each old key's later keys, over its rotations
	for _, r := range rs {
		old[r.OldKeyID] = since(r)
		chain := m.Successors(r.OldKeyID)
		if len(chain) == 0 && r.NewKeyID != "" {
			chain = []string{r.NewKeyID}
		}
		chains[r.ID] = chain
		later[r.OldKeyID] = append(later[r.OldKeyID], chain...)
		for _, k := range chain {
			if t, ok := next[k]; !ok || r.Started.Before(t) {
				next[k] = r.Started
			}
		}
	}
	first, err := d.readUses(ctx, "key_caller_months", selectRecentOwnCallers, selectRecentSubCallers, selectRecentSuccessorCallers, old, next, later, nil, now)
	if err != nil {
		return nil, err
	}
	need := map[callerID][]string{}
	for _, r := range rs {
		d.needRhythms(need, r, first.old[r.OldKeyID], chains[r.ID], now, nil)
	}
	cad, err := d.cadences(ctx, need, now)
	if err != nil {
		return nil, err
	}
	out := map[string]judged{}
	again := map[string]map[callerID]bool{} // by rotation id, the callers the second pass reads
	candidates := map[string][]callerID{}   // by old key, their sub-callers
	for _, r := range rs {
		j := first.judge(d, r, chains[r.ID], cad, now)
		if !refused {
			j.refused = nil
		}
		out[r.ID] = j
		again[r.ID] = j.reported()
		for id, u := range first.old[r.OldKeyID] {
			if !u.LastSeen.Before(since(r)) && first.after(r.OldKeyID, id, chains[r.ID], now) {
				again[r.ID][id.caller()] = true
			}
			if again[r.ID][id.caller()] {
				candidates[r.OldKeyID] = append(candidates[r.OldKeyID], id)
			}
		}
	}
	if len(candidates) == 0 {
		return out, nil
	}
	second, err := d.readUses(ctx, "key_caller_hours", selectSubCallers, selectSubCallers, selectSuccessorCallers, old, next, later, candidates, now)
	if err != nil {
		return nil, err
	}
	// Another rotation of the same old key may have chosen other callers: only r's are judged
	// again for r. A caller whose calls after now made the first pass judge it without its rhythm
	// may need it now.
	mine := map[string]map[callerID]subUse{}
	need = map[callerID][]string{}
	for _, r := range rs {
		if len(again[r.ID]) == 0 {
			continue
		}
		mine[r.ID] = map[callerID]subUse{}
		for id, u := range second.old[r.OldKeyID] {
			if again[r.ID][id.caller()] {
				mine[r.ID][id] = u
			}
		}
		d.needRhythms(need, r, mine[r.ID], chains[r.ID], now, cad)
	}
	more, err := d.cadences(ctx, need, now)
	if err != nil {
		return nil, err
	}
	maps.Copy(cad, more)
	for _, r := range rs {
		if mine[r.ID] == nil {
			continue
		}
		u := second
		u.old = keyUse{r.OldKeyID: mine[r.ID]}
		j := u.judge(d, r, chains[r.ID], cad, now)
		if !refused {
			j.refused = nil
		}
		// What succeeded in the window: in the second pass, and the callers it did not read again.
		for gid := range out[r.ID].successful {
			if !again[r.ID][gid] {
				j.successful[gid] = true
			}
		}
		out[r.ID] = j
	}
	return out, nil
}

// uses is what one pass of judge read: each old key's sub-callers since its window start, and
// those sub-callers' traffic with the later keys, per sub-caller (sub) and per caller (callers).
type uses struct{ old, sub, callers keyUse }

// readUses reads one pass of judge from table: the sub-callers of the keys of old since their
// window starts with ownQuery (only those of only when it is not nil), then their traffic with
// the later keys of each old key (later; the keys of next, since their window starts) with
// subQuery and successorQuery.
func (d *Lingering) readUses(ctx context.Context, table, ownQuery, subQuery, successorQuery string, old, next map[string]time.Time, later map[string][]string, only map[string][]callerID, now time.Time) (uses, error) {
	var u uses
	var err error
	if only == nil {
		u.old, err = d.ownCallers(ctx, table, ownQuery, old, now)
	} else {
		u.old, err = d.readOfOld(ctx, table, ownQuery, old, only, now)
	}
	if err != nil {
		return u, err
	}
	onLater := map[string][]callerID{} // the sub-callers judged (seen since the window start) on each later key
	for oldKey, subs := range u.old {
		for _, k := range later[oldKey] {
			for id, s := range subs {
				if !s.LastSeen.Before(old[oldKey]) {
					onLater[k] = append(onLater[k], id)
				}
			}
		}
	}
	if u.sub, err = d.readOfOld(ctx, table, subQuery, next, onLater, now); err != nil {
		return u, err
	}
	if u.callers, err = d.readOfOld(ctx, table, successorQuery, next, onLater, now); err != nil {
		return u, err
	}
	return u, nil
}

// judge judges r's callers from u (see remaining); chain is the later keys of r's chain.
func (u uses) judge(d *Lingering, r *rotation.Rotation, chain []string, cad map[callerID]cadence, now time.Time) judged {
	return d.remaining(r, now, u.old[r.OldKeyID], successorUse(u.sub, chain), withClients(successorUse(u.callers, chain)), cad)
}

// needRhythms adds to need the sub-callers of subs (r's old key's) whose answer depends on their
// rhythm (needsRhythm) and whose rhythm cad does not hold, with the keys it is read on: the old
// key and the later keys chain.
func (d *Lingering) needRhythms(need map[callerID][]string, r *rotation.Rotation, subs map[callerID]subUse, chain []string, now time.Time, cad map[callerID]cadence) {
	for id, u := range subs {
		if _, read := cad[id]; !read && needsRhythm(u, since(r), now, time.Duration(d.cfg.QuietFor)) {
			need[id] = append(need[id], append([]string{r.OldKeyID}, chain...)...)
		}
	}
}

// after reports whether the sub-caller id of oldKey, or its caller (a client's user agent, or the
// sub-caller itself without a client) with the later keys chain, called after now.
func (u uses) after(oldKey string, id callerID, chain []string, now time.Time) bool {
	if u.old[oldKey][id].LastSeen.After(now) {
		return true
	}
	caller := id
	if id.client != "" {
		caller.ip = ""
	}
	for _, k := range chain {
		if u.sub[k][id].LastSeen.After(now) || u.callers[k][caller].LastSeen.After(now) {
			return true
		}
	}
	return false
}

// watched reports whether r can produce findings as of now.
func (d *Lingering) watched(r *rotation.Rotation, now time.Time) bool {
	if !r.Running() {
		return now.Sub(r.Finished) <= time.Duration(d.cfg.AfterRetired)
	}
	return !r.Deadline.IsZero() && r.Deadline.Sub(now) <= time.Duration(d.cfg.InfoBefore)
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
	m, err := d.models.Load(ctx)
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
		js, err := d.judge(ctx, m, []*rotation.Rotation{r}, now, true)
		if err != nil {
			return Readiness{}, err
		}
		j := js[r.ID]
		rep.list(j)
		rep.setVerdict(len(j.remaining), j.succeeded(), k)
		switch {
		case r.Running() && rep.Safe:
			rep.Reason = fmt.Sprintf("every caller of %s since the rotation started has moved to %s or a later key, or has not succeeded with %s for as long as its rhythm needs (at least %s)",
				keyID, r.NewKeyID, keyID, time.Duration(d.cfg.QuietFor))
		case r.Running():
			rep.Reason = fmt.Sprintf("%s is still used by %s not yet on %s", keyID, callersPhrase(j.remaining, now), r.NewKeyID)
		case rep.Verdict == VerdictGone:
			rep.Reason = fmt.Sprintf("%s was %s %s ago and nothing succeeded with it since", keyID, step(r), Span(now.Sub(r.Finished)))
		case rep.Safe:
			rep.Reason = fmt.Sprintf("%s was %s %s ago; what succeeded with it since has been quiet for as long as its rhythm needs", keyID, step(r), Span(now.Sub(r.Finished)))
		default:
			rep.Reason = fmt.Sprintf("%s was %s %s ago but is still used by %s", keyID, step(r), Span(now.Sub(r.Finished)), callersPhrase(j.remaining, now))
		}
		rep.Reason += refusedPhrase(j.refused, now)
		return rep, nil
	}

	// No rotation retires the key: anything that succeeded with it lately depends on it.
	from, within := now.Add(-noRotationLookback), "in the last "+Span(noRotationLookback)
	if k != nil && (k.State == rotation.Retired || k.State == rotation.Revoked) {
		from, within = k.Updated, fmt.Sprintf("since it was %s %s ago", k.State, Span(now.Sub(k.Updated)))
	}
	window := map[string]time.Time{keyID: from}
	u, err := d.ownCallers(ctx, "key_caller_hours", selectOwnCallers, window, now)
	if err != nil {
		return Readiness{}, err
	}
	j := usedSince(u[keyID], from)
	rep.list(j)
	if k == nil && len(j.remaining) == 0 && len(j.refused) == 0 {
		var n uint64
		if err := d.conn.QueryRow(ctx, selectKeyUsed, keyID).Scan(&n); err != nil {
			return Readiness{}, fmt.Errorf("read key_usage: %w", err)
		}
		if n == 0 {
			return Readiness{}, ErrUnknownKey
		}
	}
	rep.setVerdict(len(j.remaining), len(j.remaining) > 0, k)
	if rep.Safe {
		rep.Reason = fmt.Sprintf("no rotation retires %s and nothing called it %s", keyID, within)
		if len(j.refused) > 0 {
			rep.Reason = fmt.Sprintf("no rotation retires %s and nothing succeeded with it %s", keyID, within)
		}
	} else {
		rep.Reason = fmt.Sprintf("no rotation started, and %s is used by %s %s", keyID, callersPhrase(j.remaining, now), within)
	}
	rep.Reason += refusedPhrase(j.refused, now)
	return rep, nil
}

// list fills rep's remaining and refused callers from j, bounded.
func (rep *Readiness) list(j judged) {
	rep.Remaining, rep.Unlisted = listed(j.remaining, maxListedCallers)
	if len(j.refused) > 0 {
		rep.Refused, rep.RefusedUnlisted = listed(j.refused, maxListedRefused)
	}
}
