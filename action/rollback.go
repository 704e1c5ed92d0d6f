package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/label"
	"github.com/keywatch/keywatch/rotation"
)

// The kinds of a rollback: extend the old key's grace period, or reactivate it.
const (
	KindExtendGrace = "extend_grace"
	KindReactivate  = "reactivate"
)

// The rollback guardrails, as audited (action_audit.guardrail).
const (
	// GuardLeaked refuses a rollback of a key keywatch considers leaked.
	GuardLeaked = "leaked"
	// GuardNotCritical sends an auto rollback for approval: the client is not in
	// rollback.critical_clients.
	GuardNotCritical = "not_critical"
	// GuardAlertOver refuses an approval that comes after the rollback's alert stopped firing.
	GuardAlertOver = "alert_over"
	// GuardNotInRotation refuses a rollback of a key that is not the old key of a rotation: there
	// is no retire or revoke step to roll back.
	GuardNotInRotation = "not_in_rotation"
)

// spikeDetector is the detector whose findings offer a rollback: the failure spike after a rotation
// step, whose label finding.LabelStep names the step.
const spikeDetector = "spike"

// Errors a manual rollback is refused with; the returned status says more.
var (
	// ErrLeaked refuses a rollback of a key with an open leak alert or a recent leak finding.
	ErrLeaked = errors.New("the key is considered leaked")
	// ErrNotInRotation refuses a rollback of a key that is the old key of no rotation.
	ErrNotInRotation = errors.New("the key is in no rotation")
)

// notInRotation says why keyID has nothing to roll back in model m, or "" when it is the old key
// of a rotation (running or finished).
func notInRotation(m *rotation.Model, keyID string) string {
	k := m.Key(keyID)
	switch {
	case k != nil && k.Rotation != nil:
		return ""
	case k != nil && k.Predecessor != nil:
		return fmt.Sprintf("%s is the new key of rotation %s, not the old key of one: no retire or revoke step to roll back", keyID, k.Predecessor.ID)
	}
	return fmt.Sprintf("%s is in no rotation (no key.rotation_started event names it as the old key): no retire or revoke step to roll back", keyID)
}

// IsRollback reports whether kind is a rollback (extend_grace or reactivate).
func IsRollback(kind string) bool { return kind == KindExtendGrace || kind == KindReactivate }

// WithRollback sets the rollback policy (the rollback section) and returns r.
func (r *Revoker) WithRollback(cfg config.Rollback) *Revoker {
	r.rollback = cfg
	return r
}

// leakPrefix names the leak-like detectors: the leak detector and leak reports (leak_report).
const leakPrefix = "leak"

// alertReader reads the alerts alerting stores (alerting.Reader).
type alertReader interface {
	OpenOfKey(ctx context.Context, keyID, prefix string) (alerting.Alert, bool, error)
	EpisodeState(ctx context.Context, id string) (alerting.State, bool, error)
}

// findingReader reads the findings detectors store (finding.Store).
type findingReader interface {
	LatestOfKey(ctx context.Context, keyID, prefix string, since time.Time) (finding.Finding, bool, error)
}

// leaked says why keyID is considered leaked, or "" when it is not: an open leak or leak_report
// alert on it, or a leak-like finding within rollback.leak_lookback.
func (r *Revoker) leaked(ctx context.Context, keyID string) (string, error) {
	a, ok, err := r.alerts.OpenOfKey(ctx, keyID, leakPrefix)
	switch {
	case err != nil:
		return "", fmt.Errorf("action: %w", err)
	case ok:
		return fmt.Sprintf("%s has a %s %s alert: %s", keyID, a.State, a.Detector, a.Summary), nil
	}
	f, ok, err := r.findings.LatestOfKey(ctx, keyID, leakPrefix, r.now().Add(-time.Duration(r.rollback.LeakLookback)))
	switch {
	case err != nil:
		return "", fmt.Errorf("action: %w", err)
	case ok:
		return fmt.Sprintf("%s has a %s finding of %s: %s", keyID, f.Detector, f.DetectedAt.UTC().Format(time.RFC3339), f.Summary), nil
	}
	return "", nil
}

// alertFiring says whether the alert episode alertID (alerting.Alert.ID: fingerprint-firedAt)
// still fires.
func (r *Revoker) alertFiring(ctx context.Context, alertID string) (bool, error) {
	st, _, err := r.alerts.EpisodeState(ctx, alertID)
	if err != nil {
		return false, fmt.Errorf("action: %w", err)
	}
	return st == alerting.Firing, nil
}

// refuseLeaked refuses a queued rollback, before its next attempt, of a key that leaked since it
// was decided; audited.
func (r *Revoker) refuseLeaked(ctx context.Context, rec *record, leak string) (*record, error) {
	rec.Version++
	rec.UpdatedAt = r.now().UTC()
	rec.State, rec.Guardrail = stateRefused, GuardLeaked
	rec.Detail = leak + ": never rolled back (checked again before sending)"
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "refused", Guardrail: GuardLeaked, Detail: rec.Detail}); err != nil {
		return rec, err
	}
	r.metrics.rollbackResult("refused")
	r.log.Warn("rollback refused before sending: the key leaked since it was decided", "action", rec.ID, "kind", rec.Kind, "key", rec.KeyID, "leak", leak)
	return rec, nil
}

// rollbackPolicy returns the first rollback policy whose selector matches the spike's labels, else
// the default mode; the action is filled in.
func (r *Revoker) rollbackPolicy(set label.Set) config.RollbackPolicy {
	p := config.RollbackPolicy{Mode: r.rollback.DefaultMode}
	for _, q := range r.rollback.Policies {
		if q.Selector().Matches(set) {
			p = q
			break
		}
	}
	if p.Action == "" {
		p.Action = r.rollback.DefaultAction
	}
	if p.Action == "" {
		p.Action = KindExtendGrace
	}
	return p
}

// critical says whether clientID matches rollback.critical_clients.
func (r *Revoker) critical(clientID string) bool {
	return label.MatchesAny(r.rollback.Critical(), label.Set{"client_id": clientID})
}

// stepOf is the rotation step a spike alert follows: its label finding.LabelStep, else, for an
// alert stored before alerts had labels, its evidence's "step".
func stepOf(a alerting.Alert) string {
	if s, ok := a.Labels[finding.LabelStep]; ok {
		return s
	}
	return evidenceString(a.Evidence, "step")
}

// evidenceString is the string under key in an alert's evidence (a JSON object), "" when there is none.
func evidenceString(raw json.RawMessage, key string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(m[key], &s)
	return s
}

// considerRollback decides the rollback of a firing spike alert that follows a retire or revoke
// step. ok is false when no rollback applies (another detector, a started step, policy off): the
// alert then goes to the revoke policy.
func (r *Revoker) considerRollback(ctx context.Context, a alerting.Alert) (st *alerting.ActionStatus, ok bool, err error) {
	if a.Detector != spikeDetector {
		return nil, false, nil
	}
	step := rotation.StepKind(stepOf(a))
	if step != rotation.StepRetired && step != rotation.StepRevoked {
		return nil, false, nil
	}
	rotationID := a.RotationID
	if rotationID == "" {
		rotationID = evidenceString(a.Evidence, "rotation_id")
	}
	set := alerting.LabelSet(a)
	set["rotation_id"] = rotationID
	p := r.rollbackPolicy(set)
	if p.Mode == "off" || p.Mode == "" {
		return nil, false, nil
	}
	keyID := a.KeyID // the spike names the rotation's old key: the one whose step broke the client
	id := ActionID(p.Action, keyID, a.ID())
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, err := r.store.load(ctx, id); err != nil || rec != nil {
		return status(rec), true, err
	}
	now := r.now().UTC()
	rec := &record{
		ID: id, Kind: p.Action, KeyID: keyID, ClientID: a.ClientID, AlertID: a.ID(), Mode: p.Mode,
		Reason:      fmt.Sprintf("failure spike after %s was %s (rotation %s): %s", keyID, step, rotationID, a.Summary),
		RequestedAt: now, UpdatedAt: now, Version: 1,
	}
	row := AuditEntry{Actor: "auto"}
	m, err := rotation.Load(ctx, r.conn)
	if err != nil {
		return nil, true, fmt.Errorf("action: read the rotation model for key %s: %w", keyID, err)
	}
	leak, err := r.leaked(ctx, keyID)
	if err != nil {
		return nil, true, err
	}
	metric := ""
	switch none := notInRotation(m, keyID); {
	case none != "":
		rec.State, rec.Guardrail, row.Event, metric = stateRefused, GuardNotInRotation, "refused", "refused"
		rec.Detail = none
	case leak != "":
		rec.State, rec.Guardrail, row.Event, metric = stateRefused, GuardLeaked, "refused", "refused"
		rec.Detail = leak + ": never rolled back"
	case p.Mode == "approve":
		rec.State, row.Event, metric = stateAwaiting, "awaiting_approval", "awaiting_approval"
		rec.Detail = "waiting for an approver"
	case !r.critical(a.ClientID):
		rec.State, rec.Guardrail, row.Event, metric = stateAwaiting, GuardNotCritical, "awaiting_approval", "awaiting_approval"
		rec.Detail = fmt.Sprintf("%s is not in rollback.critical_clients: waiting for an approver", a.ClientID)
	default:
		if err := r.queueAction(ctx, rec, now, "auto", time.Duration(r.rollback.ExtendBy)); err != nil {
			return nil, true, err
		}
		row.Event = "decided"
		rec.Detail = rec.Kind + " queued"
	}
	row.Guardrail, row.Detail = rec.Guardrail, rec.Detail
	if err := r.decide(ctx, rec, id+":decision", row); err != nil {
		return nil, true, err
	}
	if metric != "" {
		r.metrics.rollbackResult(metric)
	}
	r.log.Info("rollback decided", "action", id, "kind", rec.Kind, "key", keyID, "client", a.ClientID, "alert", a.ID(), "state", rec.State, "guardrail", rec.Guardrail)
	return status(rec), true, nil
}

// queueAction makes rec ready to send. A rollback's body also names the key's rotation and, for
// extend_grace, the new grace deadline: the later of the key's current deadline and now, plus
// extendBy. The body is fixed now: every attempt sends the same bytes.
func (r *Revoker) queueAction(ctx context.Context, rec *record, now time.Time, mode string, extendBy time.Duration) error {
	if !IsRollback(rec.Kind) {
		return r.queue(rec, now, mode)
	}
	m, err := rotation.Load(ctx, r.conn)
	if err != nil {
		return fmt.Errorf("action: read the rotation model for the %s of key %s: %w", rec.Kind, rec.KeyID, err)
	}
	body := webhookBody{
		KeyID: rec.KeyID, ClientID: rec.ClientID, Reason: rec.Reason, AlertID: rec.AlertID,
		RequestedAt: rec.RequestedAt.UTC(), Mode: mode, Action: rec.Kind,
	}
	deadline := time.Time{}
	if k := m.Key(rec.KeyID); k != nil && k.Rotation != nil {
		body.RotationID, deadline = k.Rotation.ID, k.Rotation.Deadline
	}
	if rec.Kind == KindExtendGrace {
		until := now.Add(extendBy)
		if deadline.After(now) {
			until = deadline.Add(extendBy)
		}
		until = until.UTC().Truncate(time.Millisecond)
		body.GraceUntil = &until
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("action: encode %s %s of key %s: %w", rec.Kind, rec.ID, rec.KeyID, err)
	}
	rec.State, rec.Body, rec.QueuedAt, rec.NextAttemptAt = stateQueued, string(b), now, now
	return nil
}

// approveRollback is Approve for a rollback awaiting approval: refused when the key is now
// considered leaked, or when its alert no longer fires (a click on a message not yet updated),
// else queued.
func (r *Revoker) approveRollback(ctx context.Context, rec *record, by Person, now time.Time) (string, error) {
	actor := actorOf(by)
	leak, err := r.leaked(ctx, rec.KeyID)
	if err != nil {
		return "", err
	}
	guard, why := GuardLeaked, leak+": never rolled back"
	if leak == "" {
		firing, err := r.alertFiring(ctx, rec.AlertID)
		if err != nil {
			return "", err
		}
		if !firing {
			guard, why = GuardAlertOver, "its alert "+rec.AlertID+" no longer fires: the incident is over"
		}
	}
	rec.Version++
	rec.UpdatedAt = now
	if leak != "" || guard == GuardAlertOver {
		rec.State, rec.Guardrail, rec.Detail = stateRefused, guard, why
		if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "refused", Guardrail: guard, Actor: actor, Detail: rec.Detail}); err != nil {
			return "", err
		}
		r.metrics.rollbackResult("refused")
		return fmt.Sprintf("Rollback (%s) of %s refused: %s", rec.Kind, rec.KeyID, why), nil
	}
	rec.ApprovedBy = shownName(by)
	rec.Detail = "approved by " + rec.ApprovedBy
	rec.Guardrail = ""
	if err := r.queueAction(ctx, rec, now, "approve", time.Duration(r.rollback.ExtendBy)); err != nil {
		return "", err
	}
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "approved", Actor: actor, Detail: rec.Detail}); err != nil {
		return "", err
	}
	r.metrics.rollbackResult("approved")
	r.log.Info("rollback approved", "action", rec.ID, "kind", rec.Kind, "key", rec.KeyID, "by", actor)
	return fmt.Sprintf("Rollback (%s) of %s approved by %s: sending", rec.Kind, rec.KeyID, rec.ApprovedBy), nil
}

// ManualRollback requests a rollback of keyID by a human (CLI or API): kind is extend_grace (by
// extendBy; 0 means rollback.extend_by) or reactivate. A key that is the old key of no rotation
// (ErrNotInRotation) or is considered leaked (ErrLeaked) is refused, and audited. Otherwise the
// rollback is queued (no cap applies to rollbacks) and the leader's Run sends it; Await follows
// it. The id comes from the key, kind, extension, reason and the minute, so a retried request
// makes no second action.
func (r *Revoker) ManualRollback(ctx context.Context, keyID, kind string, extendBy time.Duration, reason, actor string) (*alerting.ActionStatus, error) {
	if keyID == "" {
		return nil, errors.New("action: rollback: a key id is required")
	}
	if !IsRollback(kind) {
		return nil, fmt.Errorf("action: rollback of key %s: %q is not extend_grace or reactivate", keyID, kind)
	}
	if kind == KindReactivate {
		extendBy = 0
	} else if extendBy <= 0 {
		extendBy = time.Duration(r.rollback.ExtendBy)
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = "manual rollback by " + actor
	}
	now := r.now().UTC()
	id := ActionID(kind, keyID, fmt.Sprintf("manual\x00%s\x00%s\x00%s", reason, extendBy, now.Truncate(time.Minute).Format(time.RFC3339)))
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, stored, m, err := r.manualRecord(ctx, id, kind, keyID, reason, actor, now)
	if err != nil {
		return nil, err
	}
	if stored {
		return status(rec), rollbackRefusal(rec)
	}
	leak, err := r.leaked(ctx, keyID)
	if err != nil {
		return nil, err
	}
	ev := AuditEntry{Actor: actor}
	metric := "refused"
	if none := notInRotation(m, keyID); none != "" {
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardNotInRotation, none
		ev.Event = "refused"
	} else if leak != "" {
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardLeaked, leak+": never rolled back"
		ev.Event = "refused"
	} else {
		if err := r.queueAction(ctx, rec, now, "manual", extendBy); err != nil {
			return nil, err
		}
		ev.Event, metric = "decided", ""
		rec.Detail = kind + " requested by " + actor
		if kind == KindExtendGrace {
			rec.Detail += " (by " + extendBy.String() + ")"
		}
	}
	ev.Guardrail, ev.Detail = rec.Guardrail, rec.Detail
	if err := r.decide(ctx, rec, id+":decision", ev); err != nil {
		return nil, err
	}
	if metric != "" {
		r.metrics.rollbackResult(metric)
	}
	r.log.Info("manual rollback", "action", id, "kind", kind, "key", keyID, "actor", actor, "state", rec.State, "guardrail", rec.Guardrail)
	r.signal()
	return status(rec), rollbackRefusal(rec)
}

// rollbackRefusal is the error of a refused manual rollback.
func rollbackRefusal(rec *record) error {
	if rec.State != stateRefused {
		return nil
	}
	switch rec.Guardrail {
	case GuardLeaked:
		return fmt.Errorf("action: %s of key %s refused: %w: %s", rec.Kind, rec.KeyID, ErrLeaked, rec.Detail)
	case GuardNotInRotation:
		return fmt.Errorf("action: %s of key %s refused: %w: %s", rec.Kind, rec.KeyID, ErrNotInRotation, rec.Detail)
	case GuardDeclined:
		return fmt.Errorf("action: %s of key %s %s", rec.Kind, rec.KeyID, rec.Detail)
	}
	return fmt.Errorf("action: %s of key %s refused by %s: %s", rec.Kind, rec.KeyID, rec.Guardrail, rec.Detail)
}
