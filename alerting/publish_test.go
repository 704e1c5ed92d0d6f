package alerting

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/webhook"
	"github.com/keywatch/keywatch/webhook/webhooktest"
)

// TestAlertEvents: which events the stored alerts yield, and their ids (pure).
func TestAlertEvents(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	alert := func(fp string, state State, fired, resolved time.Time) stored {
		return stored{Alert: Alert{Fingerprint: fp, Detector: "lingering", KeyID: "key_" + fp, State: state,
			ActiveSince: at(0), FiredAt: fired, ResolvedAt: resolved, Labels: map[string]string{"step": "retired"}}}
	}
	silenced := alert("silenced", Firing, at(5), time.Time{})
	silenced.Silenced = "sil-1"
	inhibited := alert("inhibited", Firing, at(5), time.Time{})
	inhibited.Inhibited = "other"
	mutedThenResolved := alert("muted_resolved", Resolved, at(5), at(60))
	mutedThenResolved.Silenced = "sil-1"
	evs := alertEvents([]stored{
		alert("pending", Pending, time.Time{}, time.Time{}),
		alert("firing", Firing, at(5), time.Time{}),
		silenced, inhibited,
		alert("resolved", Resolved, at(5), at(60)),
		alert("never_fired", Resolved, time.Time{}, at(3)),
		mutedThenResolved,
	})
	var got []string
	for _, e := range evs {
		got = append(got, e.Type+" "+e.Data.(AlertData).Fingerprint)
	}
	want := []string{
		"alert.firing firing",
		"alert.firing resolved", "alert.resolved resolved",
		"alert.resolved muted_resolved",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	firing, resolved := evs[1], evs[2]
	if resolved.Follows == nil || resolved.Follows.ID != firing.ID || resolved.Follows.Type != webhook.TypeAlertFiring {
		t.Errorf("alert.resolved follows %+v, want the firing event %s", resolved.Follows, firing.ID)
	}
	if !firing.Timestamp.Equal(at(5)) || !resolved.Timestamp.Equal(at(60)) {
		t.Errorf("timestamps %s and %s: want fired_at and resolved_at", firing.Timestamp, resolved.Timestamp)
	}
	// The same stored state yields the same ids; a new episode (another active_since) new ones.
	again := alertEvents([]stored{alert("resolved", Resolved, at(5), at(60))})
	if again[0].ID != firing.ID || again[1].ID != resolved.ID {
		t.Errorf("ids not derived again: %s %s, want %s %s", again[0].ID, again[1].ID, firing.ID, resolved.ID)
	}
	next := alert("resolved", Firing, at(125), time.Time{})
	next.ActiveSince = at(120)
	if id := alertEvents([]stored{next})[0].ID; id == firing.ID {
		t.Error("a new episode has its first episode's firing id")
	}
	if evs[0].ID == firing.ID || firing.ID == resolved.ID {
		t.Error("distinct events share an id")
	}
}

// TestWebhooksEndToEnd: an alert fires and resolves through the evaluator; both events reach
// the receiver once each, verified by the reference Standard Webhooks library, also across a
// restart of the evaluator and the outbox.
func TestWebhooksEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	rcv := webhooktest.NewReceiver(t)
	start := func() (*Evaluator, *webhook.Outbox) {
		o, err := webhook.NewOutbox(e.conn, []config.Webhook{rcv.Endpoint("ops")}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return New(e.conn, e.cfg, e.slack, e.notifier, e.actor, nil, nil).WithPublisher(o), o
	}
	deliver := func(o *webhook.Outbox, n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for len(rcv.Delivered()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries within a minute, want %d", len(rcv.Delivered()), n)
			}
			if err := o.SendDue(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := newFinding("lingering", "key_1", "client_a", "rot_1", finding.Critical)
	f.Labels = map[string]string{"step": "retired"}
	f.Fields = finding.Fields{{Name: "Requests", Value: "42"}}

	ev, o := start()
	e.run("lingering", 0, "", f)
	e.eval(ev, 0)
	e.eval(ev, time.Minute) // a second pass publishes nothing more
	deliver(o, 1)

	ev, o = start() // a restart while the alert fires
	e.eval(ev, 2*time.Minute)
	e.run("lingering", 2*time.Hour, "")
	e.eval(ev, 2*time.Hour)
	e.eval(ev, 2*time.Hour+time.Minute)
	deliver(o, 2)
	if err := o.SendDue(t.Context()); err != nil {
		t.Fatal(err)
	}

	got := rcv.Deliveries()
	if len(got) != 2 || got[0].Type != webhook.TypeAlertFiring || got[1].Type != webhook.TypeAlertResolved {
		t.Fatalf("deliveries %+v: want alert.firing then alert.resolved, once each", got)
	}
	a := e.alert(f.Fingerprint)
	want := alertEvents([]stored{{Alert: a}})
	for i, d := range got {
		if d.ID != want[i].ID {
			t.Errorf("%s has webhook-id %s, want %s", d.Type, d.ID, want[i].ID)
		}
		var data AlertData
		if err := json.Unmarshal(d.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.KeyID != "key_1" || data.ClientID != "client_a" || data.RotationID != "rot_1" || data.Severity != finding.Critical ||
			data.Labels["step"] != "retired" || len(data.Fields) != 1 || data.AlertID != a.ID() || !data.FiredAt.Equal(a.FiredAt) {
			t.Errorf("%s data %+v: want the alert's", d.Type, data)
		}
		if (data.ResolvedAt != nil) != (d.Type == webhook.TypeAlertResolved) {
			t.Errorf("%s resolved_at %v", d.Type, data.ResolvedAt)
		}
	}
}
