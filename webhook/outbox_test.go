package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/webhook"
	"github.com/keywatch/keywatch/webhook/webhooktest"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

func newOutbox(t *testing.T, conn driver.Conn, endpoints ...config.Webhook) *webhook.Outbox {
	t.Helper()
	o, err := webhook.NewOutbox(conn, endpoints, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	webhook.FastRetries(o)
	return o
}

// sendUntil runs delivery passes until cond holds, failing after a minute.
func sendUntil(t *testing.T, o *webhook.Outbox, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		if err := o.SendDue(t.Context()); err != nil {
			t.Fatalf("delivery pass: %v", err)
		}
	}
}

func event(typ, id string) webhook.Event {
	return webhook.Event{ID: id, Type: typ, Timestamp: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), Data: map[string]string{"key_id": "key_1"}}
}

// TestEveryEventTypeVerifies publishes an event of every type straight into the outbox: each
// reaches the receiver once, verified by the reference Standard Webhooks library.
func TestEveryEventTypeVerifies(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	rcv := webhooktest.NewReceiver(t)
	o := newOutbox(t, conn, rcv.Endpoint("ops"))
	for _, typ := range webhook.Types() {
		if err := o.Publish(t.Context(), event(typ, webhook.EventID(typ))); err != nil {
			t.Fatal(err)
		}
	}
	sendUntil(t, o, "delivery of every type", func() bool { return len(rcv.Delivered()) == len(webhook.Types()) })
	var types []string
	for _, d := range rcv.Deliveries() {
		types = append(types, d.Type)
		if d.ID != webhook.EventID(d.Type) {
			t.Errorf("%s delivered with webhook-id %s, want %s", d.Type, d.ID, webhook.EventID(d.Type))
		}
	}
	slices.Sort(types)
	want := slices.Sorted(slices.Values(webhook.Types()))
	if !slices.Equal(types, want) {
		t.Errorf("delivered types %v, want %v", types, want)
	}
}

// TestRetryReusesIDAndBody: the receiver answers 500, then 200. The second attempt carries the
// same webhook-id and body bytes, a new valid signature, and the event is delivered once.
func TestRetryReusesIDAndBody(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	rcv := webhooktest.NewReceiver(t)
	rcv.Answer(func(n int, _ webhooktest.Delivery) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	o := newOutbox(t, conn, rcv.Endpoint("ops"))
	e := event(webhook.TypeAlertFiring, webhook.EventID("retry"))
	if err := o.Publish(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	sendUntil(t, o, "delivery after a 500", func() bool { return len(rcv.Delivered()) == 1 })
	all := rcv.Deliveries()
	if len(all) != 2 || all[0].Status != 500 || all[1].Status != 200 {
		t.Fatalf("deliveries %+v: want a 500 then a 200", all)
	}
	if all[0].ID != e.ID || all[1].ID != e.ID {
		t.Errorf("webhook-ids %s, %s: want %s both times", all[0].ID, all[1].ID, e.ID)
	}
	if !bytes.Equal(all[0].Body, all[1].Body) {
		t.Errorf("the retry's body differs:\n%s\n%s", all[0].Body, all[1].Body)
	}
	// Nothing more is sent: the event is delivered.
	if err := o.SendDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.Deliveries()); n != 2 {
		t.Errorf("%d requests after delivery, want 2", n)
	}
}

// TestPublishTwiceSendsOnce: the same event id published twice, and again by a new outbox over
// the same database (a restart), is stored and sent once.
func TestPublishTwiceSendsOnce(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	rcv := webhooktest.NewReceiver(t)
	o := newOutbox(t, conn, rcv.Endpoint("ops"))
	e := event(webhook.TypeDigestSent, webhook.EventID("twice"))
	for range 2 {
		if err := o.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	sendUntil(t, o, "delivery", func() bool { return len(rcv.Delivered()) == 1 })
	again := newOutbox(t, conn, rcv.Endpoint("ops"))
	if err := again.Publish(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*webhook.Outbox{o, again} {
		if err := x.SendDue(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rcv.Deliveries()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}

	// An event stored more than a week ago (not read back at start) published again is looked up
	// in the table, and not stored again.
	old := event(webhook.TypeDigestSent, webhook.EventID("old"))
	if err := conn.Exec(t.Context(), `INSERT INTO webhook_deliveries (endpoint, id, type, follows, body, state, attempts, last_status,
    last_error, created_at, next_attempt_at, updated_at, version)
VALUES ('ops', ?, 'digest.sent', '', '{}', 'sent', 1, 200, '', now64(3) - INTERVAL 8 DAY, now64(3) - INTERVAL 8 DAY, now64(3) - INTERVAL 8 DAY, 2)`, old.ID); err != nil {
		t.Fatal(err)
	}
	later := newOutbox(t, conn, rcv.Endpoint("ops"))
	if err := later.Publish(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	var rows uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM webhook_deliveries WHERE id = ?", old.ID).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d rows of the week-old event (%v), want 1: it was stored again", rows, err)
	}
}

// TestCrashRecovery: the process dies while an attempt is in flight (the receiver took it, the
// answer was never recorded). A new outbox over the same database sends it again with the same
// webhook-id and body.
func TestCrashRecovery(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	rcv := webhooktest.NewReceiver(t)
	ctx, die := context.WithCancel(t.Context())
	rcv.Answer(func(n int, _ webhooktest.Delivery) int {
		if n == 1 {
			die() // the process is gone before the answer is recorded
		}
		return http.StatusOK
	})
	first := newOutbox(t, conn, rcv.Endpoint("ops"))
	e := event(webhook.TypeActionRevoke, webhook.EventID("crash"))
	if err := first.Publish(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	_ = first.SendDue(ctx)
	if n := len(rcv.Deliveries()); n != 1 {
		t.Fatalf("%d requests before the crash, want 1", n)
	}
	next := newOutbox(t, conn, rcv.Endpoint("ops"))
	sendUntil(t, next, "the resend", func() bool { return len(rcv.Deliveries()) == 2 })
	all := rcv.Deliveries()
	if all[0].ID != e.ID || all[1].ID != e.ID || !bytes.Equal(all[0].Body, all[1].Body) {
		t.Errorf("the resend differs from the attempt in flight: %+v", all)
	}
	if err := next.SendDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.Deliveries()); n != 2 {
		t.Errorf("%d requests after the resend was recorded, want 2", n)
	}
}

// TestPermanentFailure: a 400 fails the event at once; a 408 or 429 is retried.
func TestPermanentFailure(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	rcv := webhooktest.NewReceiver(t)
	rcv.Answer(func(n int, d webhooktest.Delivery) int {
		switch {
		case d.Type == webhook.TypeDigestSent:
			return http.StatusBadRequest
		case n <= 3:
			return []int{http.StatusRequestTimeout, http.StatusTooManyRequests}[n%2]
		}
		return http.StatusNoContent
	})
	o := newOutbox(t, conn, rcv.Endpoint("ops"))
	if err := o.Publish(t.Context(), event(webhook.TypeDigestSent, webhook.EventID("bad"))); err != nil {
		t.Fatal(err)
	}
	if err := o.SendDue(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := o.Publish(t.Context(), event(webhook.TypeAlertFiring, webhook.EventID("slow"))); err != nil {
		t.Fatal(err)
	}
	sendUntil(t, o, "delivery after 408 and 429", func() bool { return len(rcv.Delivered()) == 1 })
	var bad int
	for _, d := range rcv.Deliveries() {
		if d.Type == webhook.TypeDigestSent {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("the event answered 400 was sent %d times, want 1", bad)
	}
}

// TestFollows: an alert.resolved reaches an endpoint only after its alert.firing, and not at all
// where the firing was never published; an endpoint that does not receive alert.firing gets it.
func TestFollows(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	all, resolvedOnly := webhooktest.NewReceiver(t), webhooktest.NewReceiver(t)
	o := newOutbox(t, conn, all.Endpoint("all"), resolvedOnly.Endpoint("resolved_only", "alert.resolved"))
	firing := event(webhook.TypeAlertFiring, webhook.EventID("a", "firing"))
	resolved := event(webhook.TypeAlertResolved, webhook.EventID("a", "resolved"))
	resolved.Follows = &webhook.Ref{ID: firing.ID, Type: firing.Type}
	orphan := event(webhook.TypeAlertResolved, webhook.EventID("b", "resolved"))
	orphan.Follows = &webhook.Ref{ID: webhook.EventID("b", "firing"), Type: webhook.TypeAlertFiring}
	for _, e := range []webhook.Event{firing, resolved, orphan} {
		if err := o.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	sendUntil(t, o, "deliveries", func() bool { return len(all.Delivered()) == 2 && len(resolvedOnly.Delivered()) == 2 })
	if got := all.Deliveries(); got[0].ID != firing.ID || got[1].ID != resolved.ID {
		t.Errorf("endpoint all got %s then %s, want firing then resolved", got[0].ID, got[1].ID)
	}
	if got := resolvedOnly.Deliveries(); got[0].Type != webhook.TypeAlertResolved || got[1].Type != webhook.TypeAlertResolved {
		t.Errorf("endpoint resolved_only got %s and %s", got[0].Type, got[1].Type)
	}
}

// TestEventsMatchSomeType: a misspelt event type in webhooks[].events fails at start instead of
// leaving the endpoint without events.
func TestEventsMatchSomeType(t *testing.T) {
	ep := config.Webhook{Name: "ops", URL: "https://hooks.example.com", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Events: []string{"alert.*", "alert.fired"}}
	if _, err := webhook.NewOutbox(nil, []config.Webhook{ep}, nil, nil); err == nil || !strings.Contains(err.Error(), `webhooks[0].events[1]: "alert.fired" matches no event type`) {
		t.Fatalf("NewOutbox with a misspelt event type: %v", err)
	}
	ep.Events = ep.Events[:1]
	if _, err := webhook.NewOutbox(nil, []config.Webhook{ep}, nil, nil); err != nil {
		t.Fatal(err)
	}
}
