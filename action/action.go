package action

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/glob"
	"github.com/keywatch/keywatch/rotation"
)

// KindRevoke is the kind of a revoke-now action (rollback.go has extend_grace and reactivate).
const KindRevoke = "revoke"

// The guardrails, as audited (action_audit.guardrail).
const (
	GuardProtected   = "protected"
	GuardHourlyCap   = "hourly_cap"
	GuardMinScore    = "min_score"
	GuardMidRotation = "mid_rotation"
)

// Errors a manual revoke or an approval is refused with; the returned status says more.
var (
	ErrProtected  = errors.New("the key is protected (revoke.protected_keys)")
	ErrHourlyCap  = errors.New("the hourly cap of revokes (revoke.max_per_hour) is reached")
	ErrUnknownKey = detect.ErrUnknownKey
	ErrNoReason   = errors.New("a reason is required")
)

// Revoker decides, guards, sends and audits revokes. It is an alerting.Actor.
type Revoker struct {
	cfg      config.Revoke
	rollback config.Rollback // set by WithRollback; its zero value offers no rollback
	store    store
	conn     driver.Conn
	metrics  *Metrics
	log      *slog.Logger
	client   *http.Client
	secret   []byte

	// now is the clock; poll how often Run looks for due actions; backoff the first retry's
	// ceiling (doubling per attempt up to maxBackoff).
	now        func() time.Time
	poll       time.Duration
	backoff    time.Duration
	maxBackoff time.Duration
	rand       func(n int64) int64
	// afterSend, when set, is called after a webhook attempt returned and before it is recorded;
	// returning true abandons the attempt unrecorded (tests: a process killed in between).
	afterSend func(id string) bool

	mu sync.Mutex // one decision at a time in this process
}

var _ alerting.Actor = (*Revoker)(nil)

// New returns a Revoker over conn. metrics may be nil.
func New(conn driver.Conn, cfg config.Revoke, metrics *Metrics, log *slog.Logger) *Revoker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Revoker{
		cfg: cfg, store: store{conn}, conn: conn, metrics: metrics, log: log,
		now: time.Now, poll: time.Second, backoff: time.Second, maxBackoff: 5 * time.Minute,
		rand: rand.Int64N,
	}
	r.client = &http.Client{
		Timeout:       time.Duration(cfg.Timeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	r.secret, _ = decodeSecret(cfg.WebhookSecret) // validated by config; a bad one fails each send
	return r
}

// ActionID is the id of the action of kind on key for one decision (an alert episode's id, or a
// manual request): the webhook-id, stable across retries, restarts and replicas.
func ActionID(kind, keyID, decision string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + keyID + "\x00" + decision))
	return "rv_" + hex.EncodeToString(h[:])[:24]
}

// policy returns the first policy matching the detector and key, else the default mode.
func (r *Revoker) policy(detector, keyID string) config.RevokePolicy {
	for _, p := range r.cfg.Policies {
		if matchOrEmpty(p.Detector, detector) && matchOrEmpty(p.Keys, keyID) {
			return p
		}
	}
	return config.RevokePolicy{Mode: r.cfg.DefaultMode}
}

// matchOrEmpty is a policy's optional glob: empty matches anything.
func matchOrEmpty(pattern, s string) bool { return pattern == "" || glob.Match(pattern, s) }

// protected says whether keyID matches revoke.protected_keys (globs whose * crosses "/").
func (r *Revoker) protected(keyID string) bool { return glob.Any(r.cfg.ProtectedKeys, keyID) }

// midRotation says whether key is being rotated: it is retiring, or the new key of a running
// rotation. The text names the rotation.
func (r *Revoker) midRotation(ctx context.Context, keyID string) (string, error) {
	m, err := rotation.Load(ctx, r.conn)
	if err != nil {
		return "", fmt.Errorf("action: read the rotation model for key %s: %w", keyID, err)
	}
	if k := m.Key(keyID); k != nil && k.State == rotation.Retiring {
		id := ""
		if k.Rotation != nil {
			id = k.Rotation.ID
		}
		return fmt.Sprintf("%s is retiring (rotation %s)", keyID, id), nil
	}
	for _, rot := range m.Rotations {
		if rot.NewKeyID == keyID && rot.Running() {
			return fmt.Sprintf("%s is the new key of running rotation %s", keyID, rot.ID), nil
		}
	}
	return "", nil
}

// sentLastHour counts the revokes sent or queued in the hour before now.
func (r *Revoker) sentLastHour(ctx context.Context) (int, error) {
	n, err := r.store.count(ctx, countSentSince, KindRevoke, r.now().Add(-time.Hour).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("action: count revokes of the last hour: %w", err)
	}
	return int(n), nil
}

func (r *Revoker) capReached(ctx context.Context) (bool, error) {
	n, err := r.sentLastHour(ctx)
	return n >= r.cfg.MaxPerHour, err
}

// Consider decides what to do about a firing alert under the revoke policy and guardrails. The
// decision for an alert episode is made once and stored; later calls return it.
func (r *Revoker) Consider(ctx context.Context, a alerting.Alert) (*alerting.ActionStatus, error) {
	if a.State != alerting.Firing || a.KeyID == "" {
		return nil, nil
	}
	if st, ok, err := r.considerRollback(ctx, a); ok {
		return st, err
	}
	p := r.policy(a.Detector, a.KeyID)
	if p.Mode == "off" || p.Mode == "" {
		return nil, nil
	}
	id := ActionID(KindRevoke, a.KeyID, a.ID())
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec, err := r.store.load(ctx, id); err != nil || rec != nil {
		return status(rec), err
	}
	now := r.now().UTC()
	rec := &record{
		ID: id, Kind: KindRevoke, KeyID: a.KeyID, ClientID: a.ClientID, AlertID: a.ID(), Mode: p.Mode,
		Reason:      fmt.Sprintf("%s alert (score %g): %s", a.Detector, a.Score, a.Summary),
		RequestedAt: now, UpdatedAt: now, Version: 1,
	}
	ev := auditRow{Actor: "auto"}
	metric := ""
	need := max(r.cfg.MinScore, p.MinScore)
	switch {
	case r.protected(a.KeyID):
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		ev.Event, metric = "skipped", "refused"
		if p.Mode == "dry-run" {
			rec.State, ev.Event, metric = stateDryRun, "dry_run", "dry_run"
			rec.Detail = "would be skipped: " + rec.Detail
		}
	case a.Score < need:
		rec.State, rec.Guardrail, ev.Event, metric = stateRefused, GuardMinScore, "skipped", "refused"
		rec.Detail = fmt.Sprintf("score %g is below %g (revoke.min_score, the policy's min_score)", a.Score, need)
		if p.Mode == "dry-run" {
			rec.State, ev.Event, metric = stateDryRun, "dry_run", "dry_run"
			rec.Detail = "would be skipped: " + rec.Detail
		}
	case p.Mode == "dry-run":
		rec.State, ev.Event, metric = stateDryRun, "dry_run", "dry_run"
		rec.Detail = "dry run: a revoke would be requested"
	case p.Mode == "approve":
		rec.State, ev.Event, metric = stateAwaiting, "awaiting_approval", "awaiting_approval"
		rec.Detail = "waiting for an approver"
	default: // auto
		mid, err := r.midRotation(ctx, a.KeyID)
		if err != nil {
			return nil, err
		}
		capped, err := r.capReached(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case mid != "":
			rec.State, rec.Guardrail, ev.Event, metric = stateAwaiting, GuardMidRotation, "awaiting_approval", "awaiting_approval"
			rec.Detail = mid + ": never revoked automatically, waiting for an approver"
		case capped:
			rec.State, rec.Guardrail, ev.Event, metric = stateRefused, GuardHourlyCap, "skipped", "refused"
			rec.Detail = fmt.Sprintf("%d revokes were already sent in the last hour (revoke.max_per_hour)", r.cfg.MaxPerHour)
		default:
			if err := r.queue(rec, now, "auto"); err != nil {
				return nil, err
			}
			ev.Event = "decided"
			rec.Detail = "revoke queued"
		}
	}
	ev.Guardrail, ev.Detail = rec.Guardrail, rec.Detail
	if err := r.decide(ctx, rec, id+":decision", ev); err != nil {
		return nil, err
	}
	if metric != "" {
		r.metrics.result(metric)
	}
	r.log.Info("revoke decided", "action", id, "key", a.KeyID, "alert", a.ID(), "state", rec.State, "guardrail", rec.Guardrail)
	return status(rec), nil
}

// webhookBody is the JSON body of an action webhook (contract 3.3 plus "action"; a rollback also
// names the rotation and, for extend_grace, the new grace deadline).
type webhookBody struct {
	KeyID       string     `json:"key_id"`
	ClientID    string     `json:"client_id"`
	Reason      string     `json:"reason"`
	AlertID     string     `json:"alert_id"`
	RequestedAt time.Time  `json:"requested_at"`
	Mode        string     `json:"mode"`
	Action      string     `json:"action"`
	RotationID  string     `json:"rotation_id,omitempty"`
	GraceUntil  *time.Time `json:"grace_until,omitempty"`
}

// queue makes rec ready to send: the body is fixed now, so every attempt sends the same bytes.
func (r *Revoker) queue(rec *record, now time.Time, mode string) error {
	b, err := json.Marshal(webhookBody{
		KeyID: rec.KeyID, ClientID: rec.ClientID, Reason: rec.Reason, AlertID: rec.AlertID,
		RequestedAt: rec.RequestedAt.UTC(), Mode: mode, Action: rec.Kind,
	})
	if err != nil {
		return fmt.Errorf("action: encode %s %s of key %s: %w", rec.Kind, rec.ID, rec.KeyID, err)
	}
	rec.State, rec.Body, rec.QueuedAt, rec.NextAttemptAt = stateQueued, string(b), now, now
	return nil
}

func (r *Revoker) auditOf(ctx context.Context, rec *record, token string, a auditRow) error {
	a.At = r.now().UTC()
	a.ActionID, a.Kind, a.KeyID, a.ClientID, a.AlertID = rec.ID, rec.Kind, rec.KeyID, rec.ClientID, rec.AlertID
	return r.store.audit(ctx, token, a)
}

// decide records a decision on rec: its audit row first, then its new state. A crash or timeout
// between the two never leaves a stored decision without its row; a decision audited but not
// stored is made again at the next evaluation or click, and the row's token keeps it one row.
func (r *Revoker) decide(ctx context.Context, rec *record, token string, a auditRow) error {
	if err := r.auditOf(ctx, rec, token, a); err != nil {
		return err
	}
	return r.store.save(ctx, rec)
}

// status is what an action shows with its alert.
func status(rec *record) *alerting.ActionStatus {
	if rec == nil {
		return nil
	}
	s := &alerting.ActionStatus{ID: rec.ID, Kind: rec.Kind, Mode: rec.Mode, Status: rec.State, Detail: rec.Detail}
	if rec.State == stateRefused && rec.Mode != "manual" {
		s.Status = "skipped"
	}
	if rec.Guardrail != "" {
		s.Detail = rec.Guardrail + ": " + rec.Detail
	}
	if rec.State == stateSent || rec.State == stateFailed {
		s.Detail = rec.Detail
	}
	return s
}

// Approve approves an action awaiting approval, once. The guardrails still apply: a protected key
// is refused, and a full hourly cap leaves the action waiting. The text is shown in Slack.
func (r *Revoker) Approve(ctx context.Context, actionID, slackUserID, slackUserName string) (string, error) {
	actor := "slack:" + slackUserID
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.store.load(ctx, actionID)
	if err != nil {
		return "", err
	}
	if rec == nil {
		r.Rejected(ctx, "slack", "unknown action", fmt.Sprintf("approval of unknown action %s by %s", actionID, actor))
		return "", fmt.Errorf("action: approve %s: no such action", actionID)
	}
	now := r.now().UTC()
	what := "Revoke"
	if IsRollback(rec.Kind) {
		what = "Rollback (" + rec.Kind + ")"
	}
	if rec.State != stateAwaiting {
		text := fmt.Sprintf("%s of %s is %s", what, rec.KeyID, strings.ReplaceAll(rec.State, "_", " "))
		if rec.ApprovedBy != "" {
			text = fmt.Sprintf("%s of %s was already approved by %s (%s)", what, rec.KeyID, rec.ApprovedBy, rec.State)
		}
		_ = r.auditOf(ctx, rec, fmt.Sprintf("%s:approve:%s:%d", actionID, slackUserID, now.UnixNano()),
			auditRow{Event: "skipped", Guardrail: "already_decided", Actor: actor, Detail: text + "; nothing done"})
		return text, nil
	}
	if IsRollback(rec.Kind) {
		return r.approveRollback(ctx, rec, actor, slackUserID, slackUserName, now)
	}
	prev := *rec
	rec.Version++
	rec.UpdatedAt = now
	switch {
	case r.protected(rec.KeyID):
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), auditRow{Event: "refused", Guardrail: GuardProtected, Actor: actor, Detail: rec.Detail}); err != nil {
			return "", err
		}
		r.metrics.result("refused")
		return fmt.Sprintf("Revoke of %s refused: the key is protected", rec.KeyID), nil
	}
	capped, err := r.capReached(ctx)
	if err != nil {
		return "", err
	}
	if capped {
		_ = r.auditOf(ctx, &prev, fmt.Sprintf("%s:approve:%s:%d", actionID, slackUserID, now.UnixNano()),
			auditRow{Event: "refused", Guardrail: GuardHourlyCap, Actor: actor, Detail: "approval refused for now: the hourly cap is reached; the action keeps waiting"})
		r.metrics.result("refused")
		return fmt.Sprintf("Revoke of %s not sent: %d revokes were already sent in the last hour (revoke.max_per_hour); try again later", rec.KeyID, r.cfg.MaxPerHour), nil
	}
	rec.ApprovedBy = slackUserName
	if rec.ApprovedBy == "" {
		rec.ApprovedBy = slackUserID
	}
	rec.Detail = "approved by " + rec.ApprovedBy
	rec.Guardrail = ""
	if err := r.queue(rec, now, "approve"); err != nil {
		return "", err
	}
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), auditRow{Event: "approved", Actor: actor, Detail: rec.Detail}); err != nil {
		return "", err
	}
	r.metrics.result("approved")
	r.log.Info("revoke approved", "action", rec.ID, "key", rec.KeyID, "by", actor)
	return fmt.Sprintf("Revoke of %s approved by %s: sending", rec.KeyID, rec.ApprovedBy), nil
}

// Rejected audits a refused request (a forged Slack interaction, a bad API token).
func (r *Revoker) Rejected(ctx context.Context, source, reason, detail string) {
	now := r.now().UTC()
	a := auditRow{At: now, Event: "rejected", Actor: source, Detail: reason + ": " + detail}
	if err := r.store.audit(ctx, fmt.Sprintf("rejected:%s:%d:%s:%s", source, now.UnixNano(), reason, detail), a); err != nil {
		r.log.Warn("audit of a rejected request failed", "source", source, "reason", reason, "err", err)
	}
	r.log.Warn("request rejected", "source", source, "reason", reason, "detail", detail)
}

// RejectedHTTP audits an API request refused for a missing or wrong token (api.V1.Rejected). The
// token itself is never recorded.
func (r *Revoker) RejectedHTTP(req *http.Request, reason string) {
	r.Rejected(req.Context(), "api", reason, fmt.Sprintf("%s %s from %s", req.Method, req.URL.Path, req.RemoteAddr))
}

// Manual requests a revoke of keyID by a human (CLI or API): the same guardrails and audit, except
// that a key mid-rotation is allowed (the requester is the approver; it is audited). The id comes
// from the key, the reason and the minute, so a retried request makes no second action.
func (r *Revoker) Manual(ctx context.Context, keyID, reason, actor string) (*alerting.ActionStatus, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, fmt.Errorf("action: revoke of key %s: %w", keyID, ErrNoReason)
	}
	if keyID == "" {
		return nil, fmt.Errorf("action: revoke: a key id is required")
	}
	now := r.now().UTC()
	id := ActionID(KindRevoke, keyID, "manual\x00"+reason+"\x00"+now.Truncate(time.Minute).Format(time.RFC3339))
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, stored, err := r.manualRecord(ctx, id, KindRevoke, keyID, reason, actor, now)
	if err != nil {
		return nil, err
	}
	if stored {
		return status(rec), refusal(rec)
	}
	ev := auditRow{Actor: actor}
	metric := "refused"
	switch {
	case r.protected(keyID):
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		ev.Event = "refused"
	default:
		capped, err := r.capReached(ctx)
		if err != nil {
			return nil, err
		}
		mid, err := r.midRotation(ctx, keyID)
		if err != nil {
			return nil, err
		}
		if capped {
			rec.State, rec.Guardrail, ev.Event = stateRefused, GuardHourlyCap, "refused"
			rec.Detail = fmt.Sprintf("%d revokes were already sent in the last hour (revoke.max_per_hour)", r.cfg.MaxPerHour)
			break
		}
		if err := r.queue(rec, now, "manual"); err != nil {
			return nil, err
		}
		ev.Event, metric = "decided", ""
		rec.Detail = "revoke requested by " + actor
		if mid != "" {
			ev.Guardrail = GuardMidRotation
			rec.Detail += "; " + mid + " (allowed: the requester approves it)"
		}
	}
	if ev.Guardrail == "" {
		ev.Guardrail = rec.Guardrail
	}
	ev.Detail = rec.Detail
	if err := r.decide(ctx, rec, id+":decision", ev); err != nil {
		return nil, err
	}
	if metric != "" {
		r.metrics.result(metric)
	}
	r.log.Info("manual revoke", "action", id, "key", keyID, "actor", actor, "state", rec.State, "guardrail", rec.Guardrail)
	return status(rec), refusal(rec)
}

// manualRecord is the new record of the manual action id (kind on keyID) or, when the same request
// was made before, the stored one (stored true). A key keywatch never saw is refused with
// ErrUnknownKey, and audited. Call with r.mu held.
func (r *Revoker) manualRecord(ctx context.Context, id, kind, keyID, reason, actor string, now time.Time) (rec *record, stored bool, err error) {
	if rec, err = r.store.load(ctx, id); err != nil || rec != nil {
		return rec, rec != nil, err
	}
	m, err := rotation.Load(ctx, r.conn)
	if err != nil {
		return nil, false, fmt.Errorf("action: read the rotation model for key %s: %w", keyID, err)
	}
	clientID := ""
	if k := m.Key(keyID); k != nil {
		clientID = k.ClientID
	} else {
		n, err := r.store.count(ctx, selectKeyUsed, keyID)
		if err != nil {
			return nil, false, fmt.Errorf("action: look up key %s: %w", keyID, err)
		}
		if n == 0 {
			_ = r.store.audit(ctx, id+":decision", auditRow{At: now, ActionID: id, Kind: kind, KeyID: keyID,
				Event: "refused", Guardrail: "unknown_key", Actor: actor, Detail: reason + ": " + ErrUnknownKey.Error()})
			return nil, false, fmt.Errorf("action: %s of key %s: %w", kind, keyID, ErrUnknownKey)
		}
	}
	return &record{
		ID: id, Kind: kind, KeyID: keyID, ClientID: clientID, Reason: reason, Mode: "manual",
		RequestedAt: now, ApprovedBy: actor, UpdatedAt: now, Version: 1,
	}, false, nil
}

// refusal is the error of a refused manual action.
func refusal(rec *record) error {
	if rec.State != stateRefused {
		return nil
	}
	switch rec.Guardrail {
	case GuardProtected:
		return fmt.Errorf("action: revoke of key %s refused: %w", rec.KeyID, ErrProtected)
	case GuardHourlyCap:
		return fmt.Errorf("action: revoke of key %s refused: %w", rec.KeyID, ErrHourlyCap)
	}
	return fmt.Errorf("action: revoke of key %s refused by %s: %s", rec.KeyID, rec.Guardrail, rec.Detail)
}
