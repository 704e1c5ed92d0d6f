package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/keywatch/keywatch/alerting"
)

// A channel configured by name ("#alerts") is posted to by name, and updated, replied to and
// searched by the id Slack answered the post with, or looked up by name after a crash: Slack's
// chat.update and conversations.* refuse names.
func TestChannelNamesAreUpdatedByID(t *testing.T) {
	conn := newDB(t)
	f := newFakeSlack(t)
	cfg := slackConfig(f, 10*time.Millisecond)
	ctx := context.Background()

	// A previous run posted to #ops and died before recording the ts (or the channel's id).
	n := alerting.Notification{Channel: "#ops", Group: leakGroup("kid_y", false)}
	payload, _ := json.Marshal(newRenderer(cfg).render(n))
	now := time.Now().UTC()
	id := notificationID(n.Group.Key, n.Channel, 1)
	r := row{GroupKey: n.Group.Key, Channel: n.Channel, Episode: 1, NotificationID: id, State: statePending,
		Payload: string(payload), ContentHash: contentHash(string(payload)), InFlight: 1, InFlightHash: contentHash(string(payload)),
		FirstAttemptAt: now.Add(-time.Minute), NextAttemptAt: now, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := (store{conn: conn}).write(ctx, &r); err != nil {
		t.Fatal(err)
	}
	posted := fmt.Sprintf("%d.000001", now.Add(-50*time.Second).Unix())
	f.seed("#ops", fakeMessage{TS: posted,
		Metadata: json.RawMessage(fmt.Sprintf(`{"event_type":%q,"event_payload":{"notification_id":%q}}`, metadataEventType, id))})

	s, _ := start(t, conn, cfg)
	if err := s.Notify(ctx, alerting.Notification{Channel: "#alerts", Group: leakGroup("kid_x", false)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the post to #alerts and the adoption in #ops", func() bool { return outboxDepth(t, conn) == 0 })
	for _, ch := range []string{"#alerts", "#ops"} {
		if err := s.Notify(ctx, alerting.Notification{Channel: ch, Group: leakGroup(map[string]string{"#alerts": "kid_x", "#ops": "kid_y"}[ch], true)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both resolutions", func() bool { return outboxDepth(t, conn) == 0 })

	calls, _ := f.snapshot()
	for _, c := range calls {
		if c.Status == 200 && c.Method != "chat.postMessage" && c.Method != "users.conversations" && c.Channel[0] == '#' {
			t.Errorf("%s called with the channel name %s", c.Method, c.Channel)
		}
	}
	for _, want := range []struct {
		method, channel string
		n               int
	}{
		{"chat.postMessage", "#alerts", 1}, {"chat.postMessage", "#ops", 0},
		{"chat.update", "CALERTS", 1}, {"chat.update", "COPS", 1},
		{"chat.postMessage", "CALERTS", 1}, {"chat.postMessage", "COPS", 1}, // the resolved thread replies
	} {
		if got := f.count(want.method, want.channel); got != want.n {
			t.Errorf("%d %s to %s, want %d", got, want.method, want.channel, want.n)
		}
	}
	var failed uint64
	_ = conn.QueryRow(ctx, "SELECT count() FROM notifications FINAL WHERE state = 'failed'").Scan(&failed)
	if failed != 0 {
		t.Errorf("%d notifications failed", failed)
	}
}
