package alerting

import (
	"context"
	"encoding/json"
	"time"

	"github.com/keywatch/keywatch/finding"
)

// State is where an alert is in its life.
type State string

// The states, as stored (alerts.state).
const (
	Pending  State = "pending"  // found, but not for long enough yet (alerting.for)
	Firing   State = "firing"   // notified
	Resolved State = "resolved" // not found for alerting.resolve_after by successful runs
)

// DegradedDetector is the detector name of the alert raised when a detector keeps failing.
const DegradedDetector = "detection_degraded"

// Alert is the life of one finding fingerprint. Its identity fields come from the finding; its
// severity, score, summary and evidence from the latest finding seen.
type Alert struct {
	Fingerprint string           `json:"fingerprint"`
	Detector    string           `json:"detector"`
	KeyID       string           `json:"key_id"`
	ClientID    string           `json:"client_id,omitempty"`
	RotationID  string           `json:"rotation_id,omitempty"`
	Severity    finding.Severity `json:"severity"`
	Score       float64          `json:"score"`
	Summary     string           `json:"summary"`
	Evidence    json.RawMessage  `json:"evidence,omitempty"`
	// Labels and Fields are the latest finding's (finding.Finding): what actions read, and what
	// notifications show in order. An alert stored before findings had them holds neither; its
	// Evidence is all there is.
	Labels map[string]string `json:"labels,omitempty"`
	Fields finding.Fields    `json:"fields,omitempty"`

	State State `json:"state"`
	// ActiveSince is when this episode's first finding was detected; FiredAt when it started
	// firing; ResolvedAt when it resolved (zero while open); LastSeen the latest finding.
	ActiveSince time.Time `json:"active_since"`
	FiredAt     time.Time `json:"fired_at,omitzero"`
	ResolvedAt  time.Time `json:"resolved_at,omitzero"`
	LastSeen    time.Time `json:"last_seen"`

	// Silenced names the silence that mutes the alert; Inhibited the fingerprint of the alert
	// that mutes it. A muted alert keeps its state but is not notified. A silenced alert is still
	// given to the Actor; an inhibited one is not.
	Silenced  string `json:"silenced,omitempty"`
	Inhibited string `json:"inhibited,omitempty"`

	// Action is what the Actor decided for this alert, if anything.
	Action *ActionStatus `json:"action,omitempty"`
}

// ID identifies one episode of an alert: the fingerprint and when the episode started firing.
// Revokes and approvals refer to it (contract 3.3's alert_id).
func (a Alert) ID() string {
	return a.Fingerprint + "-" + a.FiredAt.UTC().Format("20060102T150405.000Z")
}

// ActionStatus is what the Actor did or offers for an alert, shown with its notification.
type ActionStatus struct {
	ID     string `json:"id"`               // the webhook-id of the action
	Kind   string `json:"kind"`             // revoke, or a rollback: extend_grace, reactivate
	Mode   string `json:"mode"`             // off, dry-run, approve, auto
	Status string `json:"status"`           // e.g. awaiting_approval, sent, dry_run, skipped
	Detail string `json:"detail,omitempty"` // the guardrail that stopped it, the approver, the receiver's answer
}

// Group is the alerts of one rotation (or of one key, when not part of a rotation), as one
// notification shows them.
type Group struct {
	Key       string    `json:"key"` // "rotation:<id>", "key:<id>" or "detector:<name>"
	ClientID  string    `json:"client_id,omitempty"`
	Alerts    []Alert   `json:"alerts"`
	Resolved  bool      `json:"resolved"` // every alert in it is resolved
	UpdatedAt time.Time `json:"updated_at"`
}

// Notification is one group's current state for one channel. A Notifier shows it as one message
// per group episode: the first notification posts it, later ones update it.
type Notification struct {
	Channel string `json:"channel"`
	Group   Group  `json:"group"`
	// Reminder is set when nothing changed but alerting.repeat_interval has passed.
	Reminder bool `json:"reminder,omitempty"`
}

// Notifier takes notifications. Notify must make the notification durable (an outbox) before it
// returns, and deliver it once, in order per group and channel.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Actor decides what to do about a firing alert (revoke policy and guardrails). Consider is
// called for every firing alert on every evaluation and must be idempotent: the same alert
// episode yields the same decision and at most one action.
type Actor interface {
	Consider(ctx context.Context, a Alert) (*ActionStatus, error)
}
