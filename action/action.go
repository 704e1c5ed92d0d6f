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
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/label"
	"github.com/keywatch/keywatch/rotation"
	"github.com/keywatch/keywatch/webhook"
)

// KindRevoke is the kind of a revoke-now action (rollback.go has extend_grace and reactivate).
const KindRevoke = "revoke"

// The guardrails, as audited (action_audit.guardrail).
const (
	GuardProtected   = "protected"
	GuardHourlyCap   = "hourly_cap"
	GuardMinScore    = "min_score"
	GuardMidRotation = "mid_rotation"
	// GuardDeclined is a human's refusal of an action awaiting approval (Refuse).
	GuardDeclined = "declined"
)

// Person is who approves or refuses an action: Source is where they acted ("slack" or "console"),
// ID their identity there (a Slack user id; a console login), Name what is shown (may be empty: ID is shown).
//
// It is an alias of an unnamed struct type so that notify, which is in action's layer and cannot
// import it, declares the identical type (notify.Person) in its Approver interface.
type Person = struct{ Source, ID, Name string }

// actorOf is the audit actor of p: "slack:U123", "console:alice".
func actorOf(p Person) string { return p.Source + ":" + p.ID }

// shownName is what shows who p is: the name, else the id.
func shownName(p Person) string {
	if p.Name != "" {
		return p.Name
	}
	return p.ID
}

// maxRefusalReason is how many bytes of a refusal's reason are kept.
const maxRefusalReason = 500

// DefaultAPIWait is how long POST /v1/keys/{id}/revoke and /rollback wait for the leader's outcome
// before answering 202 with the action's id.
const DefaultAPIWait = 10 * time.Second

// Errors a manual revoke or an approval is refused with; the returned status says more.
var (
	ErrProtected  = errors.New("the key is protected (revoke.protected_keys)")
	ErrHourlyCap  = errors.New("the hourly cap of revokes (revoke.max_per_hour) is reached")
	ErrUnknownKey = errors.New("unknown key: no lifecycle events and no stored traffic")
	ErrNoReason   = errors.New("a reason is required")
)

// Revoker decides, guards, sends and audits revokes and rollbacks. It is an alerting.Actor.
//
// Where each thing is decided, across replicas and the CLI over one ClickHouse: anything may
// record a request (Manual, ManualRollback, Approve: any replica's API or Slack endpoint, or the
// CLI); only the leader's loops decide what counts against revoke.max_per_hour (Consider, from the
// alerting evaluator, and Run, which takes approved revokes) and deliver (Run). Leader election
// makes those loops run in one process at a time, and within it r.mu orders them, so the cap is
// counted from ClickHouse by one decider and each queued action has one sender. Requesters follow
// the outcome with Await.
type Revoker struct {
	cfg      config.Revoke
	rollback config.Rollback // set by WithRollback; its zero value offers no rollback
	store    store
	alerts   alertReader
	findings findingReader
	conn     driver.Conn
	metrics  *Metrics
	log      *slog.Logger
	client   *http.Client
	secret   []byte
	// publisher, when set (WithPublisher), takes a webhook of each outcome.
	publisher Publisher
	// unpublished is set when an outcome could not be published: Run publishes again (republish).
	unpublished atomic.Bool

	// now is the clock; poll how often Run looks for approved and due actions; awaitPoll how
	// often Await reads an action's state; apiWait how long the API waits for an outcome before
	// answering 202; backoff the first retry's ceiling (doubling per attempt up to maxBackoff).
	now        func() time.Time
	poll       time.Duration
	awaitPoll  time.Duration
	apiWait    time.Duration
	backoff    time.Duration
	maxBackoff time.Duration
	rand       func(n int64) int64
	// afterSend, when set, is called after a webhook attempt returned and before it is recorded;
	// returning true abandons the attempt unrecorded (tests: a process killed in between).
	afterSend func(id string) bool

	mu   sync.Mutex    // one decision at a time in this process
	wake chan struct{} // a request was stored: Run takes it now rather than at its next tick
}

var _ alerting.Actor = (*Revoker)(nil)

// New returns a Revoker over conn. metrics may be nil.
func New(conn driver.Conn, cfg config.Revoke, metrics *Metrics, log *slog.Logger) *Revoker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Revoker{
		cfg: cfg, store: store{conn}, alerts: alerting.NewReader(conn), findings: finding.NewStore(conn), conn: conn, metrics: metrics, log: log,
		now: time.Now, poll: time.Second, awaitPoll: 200 * time.Millisecond, apiWait: DefaultAPIWait,
		backoff: time.Second, maxBackoff: 5 * time.Minute, rand: rand.Int64N, wake: make(chan struct{}, 1),
	}
	r.client = &http.Client{
		Timeout:       time.Duration(cfg.Timeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	r.secret, _ = webhook.DecodeSecret(cfg.WebhookSecret) // validated by config; a bad one fails each send
	return r
}

// ActionID is the id of the action of kind on key for one decision (an alert episode's id, or a
// manual request): the webhook-id, stable across retries, restarts and replicas.
func ActionID(kind, keyID, decision string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + keyID + "\x00" + decision))
	return "rv_" + hex.EncodeToString(h[:])[:24]
}

// policy returns the first policy whose selector matches the alert's labels, else the default
// mode.
func (r *Revoker) policy(set label.Set) config.RevokePolicy {
	for _, p := range r.cfg.Policies {
		if p.Selector().Matches(set) {
			return p
		}
	}
	return config.RevokePolicy{Mode: r.cfg.DefaultMode}
}

// protected says whether keyID matches revoke.protected_keys (globs whose * crosses "/").
func (r *Revoker) protected(keyID string) bool {
	return label.MatchesAny(r.cfg.Protected(), label.Set{"key_id": keyID})
}

// midRotation says whether key is being rotated: it is retiring, or the new key of a running
// rotation. The text names the rotation.
func (r *Revoker) midRotation(ctx context.Context, keyID string) (string, error) {
	m, err := rotation.Load(ctx, r.conn)
	if err != nil {
		return "", fmt.Errorf("action: read the rotation model for key %s: %w", keyID, err)
	}
	return midRotationIn(m, keyID), nil
}

// midRotationIn is midRotation in model m.
func midRotationIn(m *rotation.Model, keyID string) string {
	if k := m.Key(keyID); k != nil && k.State == rotation.Retiring {
		id := ""
		if k.Rotation != nil {
			id = k.Rotation.ID
		}
		return fmt.Sprintf("%s is retiring (rotation %s)", keyID, id)
	}
	for _, rot := range m.Rotations {
		if rot.NewKeyID == keyID && rot.Running() {
			return fmt.Sprintf("%s is the new key of running rotation %s", keyID, rot.ID)
		}
	}
	return ""
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
	p := r.policy(alerting.LabelSet(a))
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
	ev := AuditEntry{Actor: "auto"}
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

func (r *Revoker) auditOf(ctx context.Context, rec *record, token string, a AuditEntry) error {
	a.At = r.now().UTC()
	a.ActionID, a.Kind, a.KeyID, a.ClientID, a.AlertID = rec.ID, rec.Kind, rec.KeyID, rec.ClientID, rec.AlertID
	return r.store.audit(ctx, token, a)
}

// decide records a decision on rec: its audit row first, then its new state. A crash or timeout
// between the two never leaves a stored decision without its row; a decision audited but not
// stored is made again at the next evaluation or click, and the row's token keeps it one row.
func (r *Revoker) decide(ctx context.Context, rec *record, token string, a AuditEntry) error {
	if err := r.auditOf(ctx, rec, token, a); err != nil {
		return err
	}
	if err := r.store.save(ctx, rec); err != nil {
		return err
	}
	r.publish(ctx, rec, a.Event)
	return nil
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

// Approve approves an action awaiting approval, once, for by (a Slack click, a console form). It
// only records the approval: Slack wants an answer within 3 s, and any replica may serve the click.
// A rollback is queued at once (no cap applies to rollbacks); a revoke is stored approved, and the
// leader's Run queues it within the hourly cap. The guardrails still apply: a protected key is
// refused; a full hourly cap refuses the approval for now (the action keeps waiting), here when it
// is full already, else when the leader takes the approval. The text is shown to by.
func (r *Revoker) Approve(ctx context.Context, actionID string, by Person) (string, error) {
	actor := actorOf(by)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	rec, text, err := r.awaiting(ctx, actionID, actor, "approve", now)
	if rec == nil {
		return text, err
	}
	if IsRollback(rec.Kind) {
		return r.approveRollback(ctx, rec, by, now)
	}
	prev := *rec
	rec.Version++
	rec.UpdatedAt = now
	switch {
	case r.protected(rec.KeyID):
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "refused", Guardrail: GuardProtected, Actor: actor, Detail: rec.Detail}); err != nil {
			return "", err
		}
		r.metrics.result("refused")
		return fmt.Sprintf("Revoke of %s refused: the key is protected", rec.KeyID), nil
	}
	// Only the leader's count decides; this one spares a click the leader would bounce.
	capped, err := r.capReached(ctx)
	if err != nil {
		return "", err
	}
	if capped {
		_ = r.auditOf(ctx, &prev, fmt.Sprintf("%s:approve:%s:%d", actionID, actor, now.UnixNano()),
			AuditEntry{Event: "refused", Guardrail: GuardHourlyCap, Actor: actor, Detail: "approval refused for now: the hourly cap is reached; the action keeps waiting"})
		r.metrics.result("refused")
		return fmt.Sprintf("Revoke of %s not sent: %d revokes were already sent in the last hour (revoke.max_per_hour); try again later", rec.KeyID, r.cfg.MaxPerHour), nil
	}
	rec.ApprovedBy = shownName(by)
	rec.State, rec.Guardrail, rec.Detail = stateApproved, "", "approved by "+rec.ApprovedBy
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "approved", Actor: actor,
		Detail: rec.Detail + "; the leader queues it within revoke.max_per_hour"}); err != nil {
		return "", err
	}
	r.metrics.result("approved")
	r.log.Info("revoke approved", "action", rec.ID, "key", rec.KeyID, "by", actor)
	r.signal()
	return fmt.Sprintf("Revoke of %s approved by %s: sending", rec.KeyID, rec.ApprovedBy), nil
}

// awaiting loads the action actionID that actor would approve or refuse (verb), under r.mu. It
// returns nil and what to answer when the action is unknown (an error, audited) or no longer awaits
// approval (the text, audited).
func (r *Revoker) awaiting(ctx context.Context, actionID, actor, verb string, now time.Time) (*record, string, error) {
	rec, err := r.store.load(ctx, actionID)
	if err != nil {
		return nil, "", err
	}
	if rec == nil {
		r.unknownApproval(ctx, actionID, actor, verb)
		return nil, "", fmt.Errorf("action: %s %s: no such action", verb, actionID)
	}
	if rec.State != stateAwaiting {
		return nil, r.alreadyDecided(ctx, rec, actor, verb, now), nil
	}
	return rec, "", nil
}

// unknownApproval audits an approval or a refusal (verb "approve" or "refuse"), from a signed Slack
// request by an allowed approver or a console user, of an action keywatch does not have (an old
// message of another database, a hand-made payload). The id is cut short: it came from the request.
func (r *Revoker) unknownApproval(ctx context.Context, actionID, actor, verb string) {
	if len(actionID) > 64 {
		actionID = strings.ToValidUTF8(actionID[:64], "") + "…"
	}
	noun := "approval"
	if verb == "refuse" {
		noun = "refusal"
	}
	now := r.now().UTC()
	detail := fmt.Sprintf("%s of unknown action %q by %s", noun, actionID, actor)
	if err := r.store.audit(ctx, fmt.Sprintf("%s:%s:%s:%d", actionID, verb, actor, now.UnixNano()),
		AuditEntry{At: now, ActionID: actionID, Event: "refused", Guardrail: "unknown_action", Actor: actor, Detail: detail}); err != nil {
		r.log.Warn("audit of the "+noun+" of an unknown action failed", "action", actionID, "actor", actor, "err", err)
	}
	r.log.Warn(noun+" of an unknown action refused", "action", actionID, "actor", actor)
}

// what names rec's kind in a text shown to a person: "Revoke", "Rollback (extend_grace)".
func what(rec *record) string {
	if IsRollback(rec.Kind) {
		return "Rollback (" + rec.Kind + ")"
	}
	return "Revoke"
}

// alreadyDecided audits an approval or refusal (verb "approve" or "refuse") by actor of rec, which
// no longer awaits approval, as skipped, and returns the text saying rec's state. Nothing is done.
func (r *Revoker) alreadyDecided(ctx context.Context, rec *record, actor, verb string, now time.Time) string {
	text := fmt.Sprintf("%s of %s is %s", what(rec), rec.KeyID, strings.ReplaceAll(rec.State, "_", " "))
	if rec.ApprovedBy != "" {
		text = fmt.Sprintf("%s of %s was already approved by %s (%s)", what(rec), rec.KeyID, rec.ApprovedBy, rec.State)
	}
	_ = r.auditOf(ctx, rec, fmt.Sprintf("%s:%s:%s:%d", rec.ID, verb, actor, now.UnixNano()),
		AuditEntry{Event: "skipped", Guardrail: "already_decided", Actor: actor, Detail: text + "; nothing done"})
	return text
}

// Refuse declines, for by, an action awaiting approval (a revoke or a rollback), once: it is
// stored refused (guardrail GuardDeclined) with reason (trimmed, cut to maxRefusalReason bytes;
// may be empty), audited and published as a refused outcome. An action that no longer awaits
// approval is left as it is (the refusal is audited as skipped); an unknown id is audited and an
// error. The text says what came of it, to show to by.
func (r *Revoker) Refuse(ctx context.Context, actionID string, by Person, reason string) (string, error) {
	actor := actorOf(by)
	reason = strings.TrimSpace(reason)
	if len(reason) > maxRefusalReason {
		reason = reason[:maxRefusalReason]
	}
	reason = strings.TrimSpace(strings.ToValidUTF8(reason, ""))
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	rec, text, err := r.awaiting(ctx, actionID, actor, "refuse", now)
	if rec == nil {
		return text, err
	}
	rec.Version++
	rec.UpdatedAt = now
	rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardDeclined, "refused by "+shownName(by)
	if reason != "" {
		rec.Detail += ": " + reason
	}
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), AuditEntry{Event: "refused", Guardrail: GuardDeclined, Actor: actor, Detail: rec.Detail}); err != nil {
		return "", err
	}
	r.result(rec.Kind, "refused")
	r.log.Info("action refused", "action", rec.ID, "kind", rec.Kind, "key", rec.KeyID, "by", actor)
	return fmt.Sprintf("%s of %s %s", what(rec), rec.KeyID, rec.Detail), nil
}

// Rejected audits an authenticated request that was refused (notify.Approver): a click, signed by
// Slack, of a workspace member who is not in slack.approvers. Requests refused before they are
// authenticated never come here (internal/refusal counts and logs them, writing nothing).
func (r *Revoker) Rejected(ctx context.Context, source, reason, detail string) {
	now := r.now().UTC()
	a := AuditEntry{At: now, Event: "rejected", Actor: source, Detail: reason + ": " + detail}
	if err := r.store.audit(ctx, fmt.Sprintf("rejected:%s:%d:%s:%s", source, now.UnixNano(), reason, detail), a); err != nil {
		r.log.Warn("audit of a rejected request failed", "source", source, "reason", reason, "err", err)
	}
	r.log.Warn("request rejected", "source", source, "reason", reason, "detail", detail)
}

// Manual requests a revoke of keyID by a human (CLI or API) and returns at once; Await follows it.
// What needs no count is checked here, in whichever process serves the request: a reason, a key
// keywatch saw (ErrUnknownKey), not protected (ErrProtected); a refusal is audited. The request is
// then stored approved (the requester is its approver; a key mid-rotation is allowed, and that is
// audited), and the leader's Run decides it: refused when revoke.max_per_hour revokes were sent or
// queued in the last hour, counted from ClickHouse (Await returns ErrHourlyCap), else queued and
// sent. The id comes from the key, the reason and the minute, so a retried request makes no
// second action.
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
	rec, stored, m, err := r.manualRecord(ctx, id, KindRevoke, keyID, reason, actor, now)
	if err != nil {
		return nil, err
	}
	if stored {
		return status(rec), refusal(rec)
	}
	ev := AuditEntry{Actor: actor}
	if r.protected(keyID) {
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		ev.Event, ev.Guardrail, ev.Detail = "refused", GuardProtected, rec.Detail
	} else {
		rec.State, rec.Detail = stateApproved, "revoke requested by "+actor
		if mid := midRotationIn(m, keyID); mid != "" {
			ev.Guardrail = GuardMidRotation
			rec.Detail += "; " + mid + " (allowed: the requester approves it)"
		}
		ev.Event, ev.Detail = "requested", rec.Detail+"; the leader queues it within revoke.max_per_hour"
	}
	if err := r.decide(ctx, rec, id+":decision", ev); err != nil {
		return nil, err
	}
	if rec.State == stateRefused {
		r.metrics.result("refused")
	}
	r.log.Info("manual revoke", "action", id, "key", keyID, "actor", actor, "state", rec.State, "guardrail", rec.Guardrail)
	r.signal()
	return status(rec), refusal(rec)
}

// manualRecord is the new record of the manual action id (kind on keyID) or, when the same request
// was made before, the stored one (stored true), with the rotation model (nil when stored). A key
// keywatch never saw is refused with ErrUnknownKey, and audited. Call with r.mu held.
func (r *Revoker) manualRecord(ctx context.Context, id, kind, keyID, reason, actor string, now time.Time) (rec *record, stored bool, m *rotation.Model, err error) {
	if rec, err = r.store.load(ctx, id); err != nil || rec != nil {
		return rec, rec != nil, nil, err
	}
	m, err = rotation.Load(ctx, r.conn)
	if err != nil {
		return nil, false, nil, fmt.Errorf("action: read the rotation model for key %s: %w", keyID, err)
	}
	clientID := ""
	if k := m.Key(keyID); k != nil {
		clientID = k.ClientID
	} else {
		used, err := ingest.KeyUsed(ctx, r.store.conn, keyID)
		if err != nil {
			return nil, false, nil, fmt.Errorf("action: look up key %s: %w", keyID, err)
		}
		if !used {
			_ = r.store.audit(ctx, id+":decision", AuditEntry{At: now, ActionID: id, Kind: kind, KeyID: keyID,
				Event: "refused", Guardrail: "unknown_key", Actor: actor, Detail: reason + ": " + ErrUnknownKey.Error()})
			return nil, false, nil, fmt.Errorf("action: %s of key %s: %w", kind, keyID, ErrUnknownKey)
		}
	}
	return &record{
		ID: id, Kind: kind, KeyID: keyID, ClientID: clientID, Reason: reason, Mode: "manual",
		RequestedAt: now, ApprovedBy: actor, UpdatedAt: now, Version: 1,
	}, false, m, nil
}

// signal tells this process's Run that a request is waiting (it also looks every poll).
func (r *Revoker) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// decideApproved is the leader's decision on the approved revokes (manual requests and Slack
// approvals), in the order they were approved: a key protected by this process's configuration is
// refused; over the hourly cap (counted from ClickHouse) a manual request is refused (Await
// returns ErrHourlyCap) and an approval goes back to waiting for approval; the rest are queued.
// Only Run calls it: one decider across replicas.
func (r *Revoker) decideApproved(ctx context.Context) error {
	ids, err := r.store.ids(ctx, selectApproved, KindRevoke)
	if err != nil {
		return fmt.Errorf("action: read the approved revokes: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := r.decideOne(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Revoker) decideOne(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, err := r.store.load(ctx, id)
	if err != nil || rec == nil || rec.State != stateApproved {
		return err
	}
	now := r.now().UTC()
	rec.Version++
	rec.UpdatedAt = now
	manual := rec.Mode == "manual"
	ev := AuditEntry{Actor: "auto"}
	if r.protected(rec.KeyID) {
		rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardProtected, "the key is protected (revoke.protected_keys)"
		ev.Event, ev.Guardrail, ev.Detail = "refused", GuardProtected, rec.Detail
	} else {
		n, err := r.sentLastHour(ctx)
		if err != nil {
			return err
		}
		full := fmt.Sprintf("%d revokes were already sent in the last hour (revoke.max_per_hour)", r.cfg.MaxPerHour)
		switch {
		case n >= r.cfg.MaxPerHour && manual:
			rec.State, rec.Guardrail, rec.Detail = stateRefused, GuardHourlyCap, full
			ev.Event, ev.Guardrail, ev.Detail = "refused", GuardHourlyCap, rec.Detail
		case n >= r.cfg.MaxPerHour:
			ev.Event, ev.Guardrail = "refused", GuardHourlyCap
			ev.Detail = fmt.Sprintf("the approval by %s is refused for now: %s; the action waits for another approval", rec.ApprovedBy, full)
			rec.State, rec.Guardrail, rec.ApprovedBy = stateAwaiting, GuardHourlyCap, ""
			rec.Detail = full + ": waiting for another approval"
		default:
			mode := "approve"
			if manual {
				mode = "manual"
			}
			if err := r.queue(rec, now, mode); err != nil {
				return err
			}
			ev.Event = "decided"
			ev.Detail = fmt.Sprintf("%s; queued: revoke %d of at most %d in the last hour (revoke.max_per_hour)", rec.Detail, n+1, r.cfg.MaxPerHour)
		}
	}
	if err := r.decide(ctx, rec, fmt.Sprintf("%s:v%d", rec.ID, rec.Version), ev); err != nil {
		return err
	}
	if ev.Event == "refused" {
		r.metrics.result("refused")
	}
	r.log.Info("approved revoke decided", "action", id, "key", rec.KeyID, "mode", rec.Mode, "state", rec.State, "guardrail", rec.Guardrail)
	return nil
}

// Await follows action id until it is decided for good (sent, failed, refused) or ctx ends, and
// returns its status. The error is the refusal of a refused action (ErrProtected, ErrHourlyCap,
// ErrLeaked, ErrNotInRotation...), or, wrapping ctx's error, the news that ctx ended first: the
// action is then still approved (no leader took it yet) or queued (being retried), and the leader
// carries on with it. Await never sends: the leader's Run does.
func (r *Revoker) Await(ctx context.Context, id string) (*alerting.ActionStatus, error) {
	t := time.NewTicker(r.awaitPoll)
	defer t.Stop()
	var last *record
	for {
		rec, err := r.store.load(ctx, id)
		switch {
		case err != nil && ctx.Err() != nil:
			return status(last), fmt.Errorf("action: action %s not decided yet: %w", id, ctx.Err())
		case err != nil:
			return status(last), err
		case rec == nil:
			return nil, fmt.Errorf("action: no action %s", id)
		}
		switch rec.State {
		case stateApproved, stateQueued:
		case stateRefused:
			return status(rec), refusalOf(rec)
		default:
			return status(rec), nil
		}
		last = rec
		select {
		case <-ctx.Done():
			return status(rec), fmt.Errorf("action: %s %s of key %s is still %s (%s): %w", rec.Kind, id, rec.KeyID, rec.State, rec.Detail, ctx.Err())
		case <-t.C:
		}
	}
}

// refusalOf is the error of a refused action of any kind.
func refusalOf(rec *record) error {
	if IsRollback(rec.Kind) {
		return rollbackRefusal(rec)
	}
	return refusal(rec)
}

// refusal is the error of a refused manual revoke.
func refusal(rec *record) error {
	if rec.State != stateRefused {
		return nil
	}
	switch rec.Guardrail {
	case GuardProtected:
		return fmt.Errorf("action: revoke of key %s refused: %w", rec.KeyID, ErrProtected)
	case GuardHourlyCap:
		return fmt.Errorf("action: revoke of key %s refused: %w", rec.KeyID, ErrHourlyCap)
	case GuardDeclined:
		return fmt.Errorf("action: revoke of key %s %s", rec.KeyID, rec.Detail)
	}
	return fmt.Errorf("action: revoke of key %s refused by %s: %s", rec.KeyID, rec.Guardrail, rec.Detail)
}
