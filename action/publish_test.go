package action

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
	"github.com/keywatch/keywatch/webhook"
	"github.com/keywatch/keywatch/webhook/webhooktest"
)

// TestOutcomeWebhooks drives revokes and a rollback to each outcome; every outcome reaches the
// notification webhook receiver once, verified by the reference Standard Webhooks library.
func TestOutcomeWebhooks(t *testing.T) {
	e := newEnv(t, nil, answer(400)) // the first revoke webhook is refused for good
	rcv := webhooktest.NewReceiver(t)
	o, err := webhook.NewOutbox(e.conn, []config.Webhook{rcv.Endpoint("ops")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.r.WithPublisher(o)

	failed := e.consider(alert("leak", "kid_f", 100))
	e.sendDue()
	e.consider(alert("leak", "kid_s", 100))
	e.sendDue()
	e.consider(alert("leak", "kid_s", 100)) // asked again: nothing new
	e.consider(alert("leak", "kid_low", 10))
	e.r.cfg.DefaultMode = "dry-run"
	e.consider(alert("leak", "kid_d", 100))
	e.r.cfg.DefaultMode = "approve"
	ap := e.consider(alert("leak", "kid_ap", 100))
	e.clk.Add(time.Second)
	if _, err := e.r.Approve(e.ctx, ap.ID, slackUser("U1", "alice")); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	e.sendDue()
	e.r.rollback = rollbackCfg()
	e.rotated("kid_old", "kid_new", "acme-billing", t0.Add(2*time.Hour))
	rb := e.consider(e.stored(spikeAlert("kid_old", "kid_new", "acme-billing", rotation.StepRevoked)))
	e.clk.Add(time.Second)
	if _, err := e.r.Approve(e.ctx, rb.ID, slackUser("U1", "alice")); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.sendDue()

	want := []string{
		"action.revoke failed kid_f", "action.revoke sent kid_s", "action.revoke refused kid_low", "action.revoke dry_run kid_d",
		"action.revoke approved kid_ap", "action.revoke sent kid_ap",
		"action.rollback approved kid_old", "action.rollback sent kid_old",
	}
	deadline := time.Now().Add(time.Minute)
	for len(rcv.Delivered()) < len(want) && time.Now().Before(deadline) {
		if err := o.SendDue(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, d := range rcv.Deliveries() {
		var data OutcomeData
		if err := json.Unmarshal(d.Data, &data); err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Type+" "+data.Outcome+" "+data.KeyID)
		if d.ID != webhook.EventID("action", data.ActionID, data.Outcome) {
			t.Errorf("%s %s has webhook-id %s, want one derived from action %s", d.Type, data.Outcome, d.ID, data.ActionID)
		}
		if data.KeyID == "kid_f" && (data.ActionID != failed.ID || data.HTTPStatus != 400 || data.Attempts != 1) {
			t.Errorf("the failed revoke's data %+v", data)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("outcome webhooks\n%q\nwant\n%q", got, want)
	}
}

// TestOutcomeOf: which audit events, with the state they leave an action in, are outcomes (pure).
func TestOutcomeOf(t *testing.T) {
	for _, c := range []struct{ ev, state, want string }{
		{"skipped", stateRefused, "refused"},
		{"refused", stateRefused, "refused"},
		{"refused", stateAwaiting, ""}, // an approval over the hourly cap: the action waits
		{"dry_run", stateDryRun, "dry_run"},
		{"approved", stateApproved, "approved"},
		{"approved", stateQueued, "approved"}, // a rollback is queued at once
		{"requested", stateApproved, "approved"},
		{"requested", stateRefused, ""},
		{"awaiting_approval", stateAwaiting, ""},
		{"decided", stateQueued, ""},
		{"attempt_failed", stateQueued, ""},
		{"sent", stateSent, "sent"},
		{"failed", stateFailed, "failed"},
	} {
		got, ok := outcomeOf(c.ev, c.state)
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("%s leaving %s: outcome %q, want %q", c.ev, c.state, got, c.want)
		}
	}
}

// flakyPublisher fails its first fail calls, as an outbox does while ClickHouse is unreachable,
// then keeps what it is given.
type flakyPublisher struct {
	fail int
	got  []string
}

func (p *flakyPublisher) Publish(_ context.Context, e webhook.Event) error {
	if p.fail > 0 {
		p.fail--
		return errors.New("clickhouse unreachable")
	}
	p.got = append(p.got, e.ID)
	return nil
}

// TestOutcomePublishedAgainAfterAFailure: an outcome whose event could not be stored is published
// by the next pass, and a new leader's first pass publishes the outcomes of the last day again
// (the outbox keeps each id once).
func TestOutcomePublishedAgainAfterAFailure(t *testing.T) {
	e := newEnv(t, nil, answer(200))
	p := &flakyPublisher{fail: 1}
	e.r.WithPublisher(p)
	sent := e.consider(alert("leak", "kid_s", 100))
	e.sendDue() // sent; its event is not stored
	if len(p.got) != 0 {
		t.Fatalf("published %v while the publisher failed", p.got)
	}
	e.sendDue()
	want := webhook.EventID("action", sent.ID, "sent")
	if len(p.got) != 1 || p.got[0] != want {
		t.Fatalf("published %v after the next pass, want [%s]", p.got, want)
	}
	e.sendDue()
	if len(p.got) != 1 {
		t.Fatalf("published %v: a pass without a failure publishes nothing again", p.got)
	}

	next := &flakyPublisher{}
	r := New(e.conn, e.r.cfg, nil, nil).WithPublisher(next)
	r.now = e.r.now
	r.unpublished.Store(true) // what Run does when it starts
	if err := r.SendDue(e.ctx); err != nil {
		t.Fatal(err)
	}
	if len(next.got) != 1 || next.got[0] != want {
		t.Fatalf("a new leader published %v, want [%s]", next.got, want)
	}
}
