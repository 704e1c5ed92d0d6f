package action

import (
	"context"
	"fmt"
	"time"

	"github.com/keywatch/keywatch/webhook"
)

// Publisher takes notification webhooks: webhook.Outbox. Publish must store the event durably
// and once per id, and return without delivering it.
type Publisher interface {
	Publish(ctx context.Context, e webhook.Event) error
}

// WithPublisher makes r publish an action.revoke or action.rollback event on each outcome of
// an action, and returns r.
func (r *Revoker) WithPublisher(p Publisher) *Revoker {
	r.publisher = p
	return r
}

// outcomeOf is the outcome that audit event ev, leaving an action in state, is, if it is one: a
// guardrail's refusal (skipped for an automatic decision), a dry run, an approval (a manual
// request approves itself; a rollback is queued at once), the receiver's acceptance, and giving
// up. An event is an outcome only when it leaves the action in that outcome's state
// (stateOutcome): a refusal that leaves the action waiting (an approval over the hourly cap) is
// none.
func outcomeOf(ev, state string) (string, bool) {
	var outcome string
	switch ev {
	case "refused", "skipped":
		outcome = "refused"
	case "dry_run", "sent", "failed":
		outcome = ev
	case "approved", "requested":
		outcome = "approved"
	default:
		return "", false
	}
	return outcome, stateOutcome(state) == outcome
}

// OutcomeData is the data of action.revoke and action.rollback events.
type OutcomeData struct {
	ActionID   string `json:"action_id"` // the webhook-id of the revoke webhook itself
	Kind       string `json:"kind"`      // revoke, extend_grace or reactivate
	Outcome    string `json:"outcome"`   // refused, dry_run, approved, sent or failed
	KeyID      string `json:"key_id"`
	ClientID   string `json:"client_id"`
	AlertID    string `json:"alert_id"` // the alert episode that asked for it; empty for a manual request
	Mode       string `json:"mode"`     // dry-run, approve, auto or manual
	Reason     string `json:"reason"`
	Guardrail  string `json:"guardrail"` // the guardrail that refused it or sent it for approval
	Detail     string `json:"detail"`
	ApprovedBy string `json:"approved_by"`
	Attempts   uint32 `json:"attempts"`
	HTTPStatus uint16 `json:"http_status"` // the receiver's last answer; 0 before any
}

// outcomeEvent is the event of rec's outcome named by audit event ev, if ev is one. Its id is
// derived from the action's id and the outcome: one event per outcome of each action.
func outcomeEvent(rec *record, ev string) (webhook.Event, bool) {
	outcome, ok := outcomeOf(ev, rec.State)
	if !ok {
		return webhook.Event{}, false
	}
	typ := webhook.TypeActionRevoke
	if IsRollback(rec.Kind) {
		typ = webhook.TypeActionRollback
	}
	return webhook.Event{
		ID: webhook.EventID("action", rec.ID, outcome), Type: typ, Timestamp: rec.UpdatedAt,
		Data: OutcomeData{
			ActionID: rec.ID, Kind: rec.Kind, Outcome: outcome, KeyID: rec.KeyID, ClientID: rec.ClientID, AlertID: rec.AlertID,
			Mode: rec.Mode, Reason: rec.Reason, Guardrail: rec.Guardrail, Detail: rec.Detail, ApprovedBy: rec.ApprovedBy,
			Attempts: rec.Attempts, HTTPStatus: rec.LastStatus,
		},
	}, true
}

// publish publishes the outcome audit event ev made of rec, once rec is stored. An event that
// cannot be stored is logged, and the next pass of Run publishes the outcome of every action
// decided within republishFor again (republish).
func (r *Revoker) publish(ctx context.Context, rec *record, ev string) {
	if r.publisher == nil {
		return
	}
	e, ok := outcomeEvent(rec, ev)
	if !ok {
		return
	}
	if err := r.publisher.Publish(ctx, e); err != nil {
		r.unpublished.Store(true)
		r.log.Error("publishing an action webhook failed; publishing it again next pass", "action", rec.ID, "type", e.Type, "id", e.ID, "err", err)
	}
}

// republishFor is how far back republish looks: the actions decided since then.
const republishFor = 24 * time.Hour

// republish publishes the outcome of every action whose last version, written within
// republishFor, is an outcome. Run does it when it starts (a crash between storing an action and
// publishing its outcome, on this replica or the last leader) and after a publish failed. The
// publisher stores each id once, so what was published already is not sent again. An outcome the
// action has since left (approved, then sent) is not published again; its later one is.
func (r *Revoker) republish(ctx context.Context) error {
	if r.publisher == nil {
		return nil
	}
	r.unpublished.Store(false)
	recs, err := r.store.outcomesSince(ctx, r.now().Add(-republishFor))
	if err != nil {
		r.unpublished.Store(true)
		return err
	}
	for _, rec := range recs {
		e, ok := outcomeEvent(rec, stateOutcome(rec.State))
		if !ok {
			continue
		}
		if err := r.publisher.Publish(ctx, e); err != nil {
			r.unpublished.Store(true)
			return fmt.Errorf("action: publish the %s outcome of %s %s: %w", e.Type, rec.Kind, rec.ID, err)
		}
	}
	return nil
}

// stateOutcome is the outcome an action in state shows ("" for none): what republish publishes
// again, and what outcomeOf checks an event against.
func stateOutcome(state string) string {
	switch state {
	case stateRefused:
		return "refused"
	case stateDryRun:
		return "dry_run"
	case stateApproved, stateQueued:
		return "approved"
	case stateSent:
		return "sent"
	case stateFailed:
		return "failed"
	}
	return ""
}
