package alerting

import (
	"context"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/webhook"
)

// Publisher takes notification webhooks: webhook.Outbox. Publish must store the event durably
// and once per id, and return without delivering it.
type Publisher interface {
	Publish(ctx context.Context, e webhook.Event) error
}

// WithPublisher makes the Evaluator publish alert.firing and alert.resolved events to p, and
// returns e.
func (e *Evaluator) WithPublisher(p Publisher) *Evaluator {
	e.publisher = p
	return e
}

// AlertData is the data of alert.firing and alert.resolved events.
type AlertData struct {
	AlertID     string            `json:"alert_id"` // Alert.ID: what revokes and approvals refer to
	Fingerprint string            `json:"fingerprint"`
	Detector    string            `json:"detector"`
	Severity    finding.Severity  `json:"severity"`
	Summary     string            `json:"summary"`
	Labels      map[string]string `json:"labels"` // what selectors match: detector, severity, key_id, ... and the finding's own
	Fields      finding.Fields    `json:"fields"`
	KeyID       string            `json:"key_id"`
	ClientID    string            `json:"client_id"`
	RotationID  string            `json:"rotation_id"`
	ActiveSince time.Time         `json:"active_since"`
	FiredAt     time.Time         `json:"fired_at"`
	ResolvedAt  *time.Time        `json:"resolved_at"` // null until resolved
	Silenced    string            `json:"silenced,omitempty"`
}

// alertEvents derives the events of alerts as stored after a pass, in fingerprint order: an
// alert that fired and is not muted has its alert.firing event; an alert that fired and resolved
// has its alert.resolved event, which follows the firing one (an endpoint gets it only if it got
// that). Ids are derived from the fingerprint and the episode's start, so deriving them again
// every pass, after a restart or on a new leader yields the same events.
func alertEvents(alerts []stored) []webhook.Event {
	var out []webhook.Event
	for _, a := range alerts {
		if a.FiredAt.IsZero() || a.FiredAt.Unix() <= 0 {
			continue // never fired: nothing was notified, nothing resolves
		}
		episode := a.ActiveSince.UTC().Format(time.RFC3339Nano)
		firing := webhook.Ref{ID: webhook.EventID("alert", a.Fingerprint, episode, "firing"), Type: webhook.TypeAlertFiring}
		data := AlertData{
			AlertID: a.ID(), Fingerprint: a.Fingerprint, Detector: a.Detector, Severity: a.Severity, Summary: a.Summary,
			Labels: LabelSet(a.Alert), Fields: a.Fields, KeyID: a.KeyID, ClientID: a.ClientID, RotationID: a.RotationID,
			ActiveSince: a.ActiveSince.UTC(), FiredAt: a.FiredAt.UTC(), Silenced: a.Silenced,
		}
		if data.Fields == nil {
			data.Fields = finding.Fields{}
		}
		if a.Silenced == "" && a.Inhibited == "" {
			fd := data
			fd.Silenced = ""
			out = append(out, webhook.Event{ID: firing.ID, Type: firing.Type, Timestamp: a.FiredAt, Data: fd})
		}
		if a.State == Resolved && !a.ResolvedAt.IsZero() && a.ResolvedAt.Unix() > 0 {
			rd := data
			at := a.ResolvedAt.UTC()
			rd.ResolvedAt = &at
			out = append(out, webhook.Event{
				ID: webhook.EventID("alert", a.Fingerprint, episode, "resolved"), Type: webhook.TypeAlertResolved,
				Timestamp: at, Data: rd, Follows: &firing,
			})
		}
	}
	return out
}

// publish gives the publisher the events of the alerts after a pass, every pass: the publisher
// stores each id once (webhook.Outbox checks in memory), so deriving them again costs no I/O, and
// an event that could not be stored is stored by a later pass.
func (e *Evaluator) publish(ctx context.Context, alerts []stored) {
	if e.publisher == nil {
		return
	}
	for _, ev := range alertEvents(alerts) {
		if err := e.publisher.Publish(ctx, ev); err != nil {
			e.log.Warn("publishing an alert webhook failed; retrying next pass", "type", ev.Type, "id", ev.ID, "err", err)
		}
	}
}
