package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

func newDB(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	return conn
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func slackConfig(f *fakeSlack, gap time.Duration) config.Slack {
	cfg := config.Default().Slack
	cfg.Token = "xoxb-test"
	cfg.APIURL = f.url()
	cfg.MinInterval = config.Duration(gap)
	cfg.GrafanaURL = "https://grafana.example/d/keywatch"
	cfg.RunbookURL = "https://runbooks.example/keywatch"
	return cfg
}

// start runs a notifier until the test ends or stop is called.
func start(t *testing.T, conn driver.Conn, cfg config.Slack) (s *Slack, stop func()) {
	t.Helper()
	s = NewSlack(conn, cfg, nil, quietLog())
	s.backoff, s.idleTick = 50*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, onceFunc(stop)
}

// onceFunc makes stop safe to call twice.
func onceFunc(stop func()) func() {
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			stop()
		}
	}
}

// waitFor polls cond until it holds; it fails the test after a generous deadline (this is a
// liveness guard, not a speed assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func outboxDepth(t *testing.T, conn driver.Conn) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), `SELECT count() FROM notifications FINAL WHERE state = 'pending'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func leakGroup(key string, resolved bool) alerting.Group {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	a := alerting.Alert{
		Fingerprint: "fp_" + key, Detector: "leak", KeyID: key, ClientID: "acme", Severity: finding.Critical, Score: 150,
		Summary: "key " + key + " used from 3 new networks", State: alerting.Firing, ActiveSince: at, FiredAt: at, LastSeen: at.Add(time.Hour),
		Evidence: json.RawMessage(`{"window_requests": 10, "signals": [{"kind": "new_network", "score": 60, "reason": "new networks"}]}`),
		Fields:   []finding.Field{{Name: "Window", Value: "10 requests"}, {Name: "Signal new network (+60)", Value: "new networks"}},
	}
	if resolved {
		a.State, a.ResolvedAt = alerting.Resolved, at.Add(3*time.Hour)
	}
	return alerting.Group{Key: "key:" + key, ClientID: "acme", Alerts: []alerting.Alert{a}, Resolved: resolved, UpdatedAt: at}
}

func TestExactlyOnceAcrossRestart(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	cfg := slackConfig(f, 20*time.Millisecond)
	ctx := context.Background()
	firing := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}

	s, stop := start(t, conn, cfg)
	for range 4 {
		if err := s.Notify(ctx, firing); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first post", func() bool { return f.count("chat.postMessage", "C1") >= 1 && outboxDepth(t, conn) == 0 })
	for range 3 { // the same notification over more evaluation passes
		if err := s.Notify(ctx, firing); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	// Restart: a new notifier over the same database.
	s2, _ := start(t, conn, cfg)
	if err := s2.Notify(ctx, firing); err != nil {
		t.Fatal(err)
	}
	// A later pass where only the alert's last_seen moved: the message says the same, no update.
	moved := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}
	moved.Group.Alerts[0].LastSeen = moved.Group.Alerts[0].LastSeen.Add(time.Hour)
	moved.Group.UpdatedAt = moved.Group.UpdatedAt.Add(time.Hour)
	if err := s2.Notify(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if n := outboxDepth(t, conn); n != 0 {
		t.Fatalf("repeating a delivered notification after a restart queued %d rows", n)
	}
	resolved := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", true)}
	for range 3 {
		if err := s2.Notify(ctx, resolved); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the resolution", func() bool {
		return f.count("chat.update", "C1") >= 1 && f.count("chat.postMessage", "C1") >= 2 && outboxDepth(t, conn) == 0
	})
	if err := s2.Notify(ctx, resolved); err != nil {
		t.Fatal(err)
	}
	if n := outboxDepth(t, conn); n != 0 {
		t.Fatalf("a repeated resolution left %d rows pending", n)
	}

	_, msgs := f.snapshot()
	if len(msgs["C1"]) != 2 {
		t.Fatalf("want the message and one thread reply in C1, got %+v", msgs["C1"])
	}
	top, reply := msgs["C1"][0], msgs["C1"][1]
	if top.ThreadTS != "" || reply.ThreadTS != top.TS {
		t.Fatalf("want the reply in the message's thread: message %+v, reply %+v", top, reply)
	}
	if top.Updates != 1 {
		t.Fatalf("want one chat.update of the message, got %d", top.Updates)
	}
	if got := f.count("chat.postMessage", ""); got != 2 {
		t.Fatalf("want 2 chat.postMessage calls (message, thread reply), got %d", got)
	}

	// The group fires again later: a new message (episode 2).
	again := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}
	again.Group.Alerts[0].Summary = "key kid_x leaks again"
	if err := s2.Notify(ctx, again); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new episode", func() bool { return f.count("chat.postMessage", "C1") == 3 && outboxDepth(t, conn) == 0 })
	_, msgs = f.snapshot()
	if m := msgs["C1"][2]; m.ThreadTS != "" {
		t.Fatalf("a new episode must be a new message, got a reply %+v", m)
	}
}

func TestRetriesAndPacing(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	f.fail = func(n int) int {
		switch {
		case n <= 3:
			return http.StatusTooManyRequests
		case n <= 7:
			return http.StatusInternalServerError
		}
		return 0
	}
	gap := 200 * time.Millisecond
	cfg := slackConfig(f, gap)
	ctx := context.Background()
	s, _ := start(t, conn, cfg)

	channels := []string{"C1", "C2"}
	keys := []string{"kid_a", "kid_b", "kid_c"}
	for _, k := range keys {
		for _, c := range channels {
			if err := s.Notify(ctx, alerting.Notification{Channel: c, Group: leakGroup(k, false)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every post", func() bool { return f.count("chat.postMessage", "") == 6 && outboxDepth(t, conn) == 0 })
	for _, k := range keys {
		for _, c := range channels {
			if err := s.Notify(ctx, alerting.Notification{Channel: c, Group: leakGroup(k, true)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every resolution", func() bool {
		return f.count("chat.update", "") == 6 && f.count("chat.postMessage", "") == 12 && outboxDepth(t, conn) == 0
	})

	calls, msgs := f.snapshot()
	for _, c := range channels {
		if len(msgs[c]) != 6 { // 3 messages and 3 replies
			t.Errorf("%s: want 3 messages and 3 replies, got %d", c, len(msgs[c]))
		}
		for _, m := range msgs[c] {
			if m.ThreadTS == "" && m.Updates != 1 {
				t.Errorf("%s: message %s updated %d times, want 1", c, m.TS, m.Updates)
			}
		}
	}
	statuses := map[int]int{}
	last := map[string]time.Time{}
	const tolerance = 30 * time.Millisecond
	for _, c := range calls {
		statuses[c.Status]++
		if prev, ok := last[c.Channel]; ok && c.At.Sub(prev) < gap-tolerance {
			t.Errorf("%s: two calls %s apart (%s then %s), want at least %s", c.Channel, c.At.Sub(prev), c.Method, prev.Format(time.StampMilli), gap)
		}
		last[c.Channel] = c.At
	}
	if statuses[429] != 3 || statuses[500] != 4 {
		t.Errorf("want 3 answers 429 and 4 answers 500, got %v", statuses)
	}
}

func TestCrashWindowAdoptsPostedMessage(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	cfg := slackConfig(f, 10*time.Millisecond)
	ctx := context.Background()

	// A previous run marked the post in flight, Slack took it, and the run died before recording
	// the ts.
	n := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}
	msg := newRenderer(cfg).render(n)
	payload, _ := json.Marshal(msg)
	now := time.Now().UTC()
	id := notificationID(n.Group.Key, "C1", 1)
	r := row{GroupKey: n.Group.Key, Channel: "C1", Episode: 1, NotificationID: id, State: statePending,
		Payload: string(payload), ContentHash: contentHash(string(payload)), InFlight: 1, InFlightHash: contentHash(string(payload)),
		FirstAttemptAt: now.Add(-time.Minute), Attempts: 0, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := (store{conn: conn}).write(ctx, &r); err != nil {
		t.Fatal(err)
	}
	// A second group whose in-flight post never reached Slack.
	n2 := alerting.Notification{Channel: "C1", Group: leakGroup("kid_y", false)}
	payload2, _ := json.Marshal(newRenderer(cfg).render(n2))
	r2 := r
	r2.GroupKey, r2.NotificationID, r2.Payload = n2.Group.Key, notificationID(n2.Group.Key, "C1", 1), string(payload2)
	r2.ContentHash, r2.InFlightHash = contentHash(string(payload2)), contentHash(string(payload2))
	if err := (store{conn: conn}).write(ctx, &r2); err != nil {
		t.Fatal(err)
	}
	posted := fmt.Sprintf("%d.000001", now.Add(-50*time.Second).Unix())
	f.seed("C1", fakeMessage{TS: posted, Text: msg.Text,
		Metadata: json.RawMessage(fmt.Sprintf(`{"event_type":%q,"event_payload":{"notification_id":%q}}`, metadataEventType, id))})

	s, _ := start(t, conn, cfg)
	waitFor(t, "the outbox to drain", func() bool { return outboxDepth(t, conn) == 0 })
	if got := f.count("chat.postMessage", "C1"); got != 1 {
		t.Fatalf("want 1 post (kid_y's, never posted) and kid_x's adopted, got %d posts", got)
	}
	var ts string
	if err := conn.QueryRow(ctx, `SELECT ts FROM notifications FINAL WHERE group_key = ?`, n.Group.Key).Scan(&ts); err != nil {
		t.Fatal(err)
	}
	if ts != posted {
		t.Fatalf("want the posted message's ts %s adopted, got %q", posted, ts)
	}
	// Its resolution updates the adopted message.
	if err := s.Notify(ctx, alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", true)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resolution", func() bool { return outboxDepth(t, conn) == 0 && f.count("chat.update", "C1") == 1 })
	calls, _ := f.snapshot()
	for _, c := range calls {
		if c.Method == "chat.update" && c.TS != posted {
			t.Fatalf("updated %s, want the adopted %s", c.TS, posted)
		}
	}
}

func TestRefusedNotificationIsKeptFailed(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	s, _ := start(t, conn, slackConfig(f, 10*time.Millisecond))
	ctx := context.Background()
	if err := s.Notify(ctx, alerting.Notification{Channel: "C_MISSING", Group: leakGroup("kid_x", false)}); err != nil {
		t.Fatal(err)
	}
	var state, lastErr string
	waitFor(t, "the row to fail", func() bool {
		err := conn.QueryRow(ctx, `SELECT toString(state), last_error FROM notifications FINAL`).Scan(&state, &lastErr)
		return err == nil && state == stateFailed
	})
	if lastErr != "channel_not_found" {
		t.Fatalf("want last_error channel_not_found, got %q", lastErr)
	}
	// Repeating it does not retry.
	if err := s.Notify(ctx, alerting.Notification{Channel: "C_MISSING", Group: leakGroup("kid_x", false)}); err != nil {
		t.Fatal(err)
	}
	if got := f.count("chat.postMessage", "C_MISSING"); got != 1 {
		t.Fatalf("want 1 attempt, got %d", got)
	}
}

func TestNoTokenKeepsOutbox(t *testing.T) {
	conn := newDB(t)
	cfg := config.Default().Slack
	s := NewSlack(conn, cfg, nil, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	if err := s.Notify(context.Background(), alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if n := outboxDepth(t, conn); n != 1 {
		t.Fatalf("want the notification kept in the outbox, got %d pending", n)
	}
}

func TestReminderIsAThreadReply(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	s, _ := start(t, conn, slackConfig(f, 10*time.Millisecond))
	ctx := context.Background()
	n := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", false)}
	if err := s.Notify(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the post", func() bool { return f.count("chat.postMessage", "C1") == 1 && outboxDepth(t, conn) == 0 })
	n.Reminder = true
	if err := s.Notify(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reminder", func() bool { return f.count("chat.postMessage", "C1") == 2 && outboxDepth(t, conn) == 0 })
	_, msgs := f.snapshot()
	if len(msgs["C1"]) != 2 || msgs["C1"][1].ThreadTS != msgs["C1"][0].TS || !strings.Contains(msgs["C1"][1].Text, "Still firing") {
		t.Fatalf("want the reminder as a reply in the message's thread, got %+v", msgs["C1"])
	}
	if f.count("chat.update", "") != 0 {
		t.Fatal("a reminder must not update the message")
	}
}

func TestCrashWindowAdoptsPostedReply(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	cfg := slackConfig(f, 10*time.Millisecond)
	ctx := context.Background()

	// The resolution's update went out and its thread reply (reply 1) was in flight at the crash.
	n := alerting.Notification{Channel: "C1", Group: leakGroup("kid_x", true)}
	payload, _ := json.Marshal(newRenderer(cfg).render(n))
	now := time.Now().UTC()
	id := notificationID(n.Group.Key, "C1", 1)
	parent := fmt.Sprintf("%d.000001", now.Add(-time.Hour).Unix())
	h := contentHash(string(payload))
	r := row{GroupKey: n.Group.Key, Channel: "C1", Episode: 1, NotificationID: id, State: statePending, Resolved: 1,
		Payload: string(payload), ContentHash: h, Reply: "resolved", ReplySeq: 1, TS: parent, SentHash: h, InFlight: 1, InFlightHash: h,
		FirstAttemptAt: now.Add(-time.Hour), NextAttemptAt: now, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := (store{conn: conn}).write(ctx, &r); err != nil {
		t.Fatal(err)
	}
	f.seed("C1", fakeMessage{TS: parent, Text: "leak on kid_x"})
	f.seed("C1", fakeMessage{TS: fmt.Sprintf("%d.000002", now.Unix()), ThreadTS: parent, Text: "Resolved",
		Metadata: json.RawMessage(fmt.Sprintf(`{"event_type":%q,"event_payload":{"notification_id":%q,"reply_seq":"1"}}`, metadataEventType, id))})

	start(t, conn, cfg)
	waitFor(t, "the outbox to drain", func() bool { return outboxDepth(t, conn) == 0 })
	if got := f.count("chat.postMessage", ""); got != 0 {
		t.Fatalf("the reply already in the thread was posted again (%d posts)", got)
	}
	if got := f.count("conversations.replies", "C1"); got != 1 {
		t.Fatalf("want one look at the thread, got %d", got)
	}
}
