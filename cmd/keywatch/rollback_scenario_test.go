package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
)

// TestRollbackAfterRevokeBreaksClients is issue #7's rollback acceptance on the real daemon path:
// three clients' old keys are revoked while they still use them, and their failures spike.
//   - acme (approve): the Slack alert carries a "Roll back" button; a correctly signed click sends
//     one extend_grace webhook (the receiver answers 500 once: the retry has the same webhook-id
//     and body), audited; acme's traffic then recovers and the spike alert resolves.
//   - globex-pay (auto, critical): the same without a click.
//   - initech (auto, critical) has a recent leak finding: the rollback is refused and audited.
func TestRollbackAfterRevokeBreaksClients(t *testing.T) {
	const (
		webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		signing       = "slack-signing-secret-rollback-0123"
	)
	slackFake := newRBSlack(t)
	receiver := newWebhookReceiver(t, webhookSecret, true)
	db, kafka, httpAddr, cfgPath := runSetup(t, 1, fmt.Sprintf(`
detect:
  leak: {schedule: ""}
  lingering: {schedule: ""}
  hygiene: {schedule: ""}
  spike: {schedule: "*/2 * * * * *", after_step: 1h, baseline: 2h, short_window: 10m, long_window: 20m, min_failures: 20, min_rate: 0.05}
alerting:
  evaluate_interval: 1s
  group_wait: 0s
  group_interval: 1s
  resolve_after: {spike: 2s}
leader: {enabled: false}
slack:
  api_url: %q
  default_channel: "#keywatch"
  min_interval: 100ms
  approvers: [U_ALICE]
revoke:
  webhook_url: %q
  retry_for: 1m
rollback:
  default_mode: auto
  critical_clients: ["globex-*", "initech"]
  policies: [{clients: acme, mode: approve}]
  extend_by: 24h
`, slackFake.srv.GetAPIURL(), receiver.URL))
	t.Setenv("KEYWATCH_SLACK_TOKEN", "xoxb-test-token")
	t.Setenv("KEYWATCH_SLACK_SIGNING_SECRET", signing)
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", webhookSecret)
	t.Setenv("KEYWATCH_HTTP_TOKEN", "api-token-rollback-0123456789abcdef")
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()
	kw.waitReady(t, httpAddr)
	ctx := context.Background()
	conn := ch.Conn(t, db)

	// initech's old key is considered leaked: a leak finding of a minute ago.
	now := time.Now().UTC()
	if err := conn.Exec(ctx, `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'leak-run', 'leak', 'fp-leak-initech', 'critical', 120, 'kid_initech_old', 'initech', '', 'kid_initech_old used from 12 new networks', '{}')`, now.Add(-time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// Each client rotated (grace ended 30 minutes ago), kept the old key, and it was revoked 5
	// minutes ago: 120 good requests in the hour before, 40 revoked_key failures since.
	clients := []string{"acme", "globex-pay", "initech"}
	var lifecycle, traffic [][]byte
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	for i, c := range clients {
		old, next := "kid_"+strings.Split(c, "-")[0]+"_old", "kid_"+strings.Split(c, "-")[0]+"_new"
		lifecycle = append(lifecycle,
			fmt.Appendf(nil, `{"ts":%q,"type":"key.created","key_id":%q,"client_id":%q}`, ts(now.Add(-3*time.Hour)), old, c),
			fmt.Appendf(nil, `{"ts":%q,"type":"key.rotation_started","key_id":%q,"client_id":%q,"new_key_id":%q,"grace_until":%q}`,
				ts(now.Add(-2*time.Hour)), old, c, next, ts(now.Add(-30*time.Minute))),
			fmt.Appendf(nil, `{"ts":%q,"type":"key.revoked","key_id":%q,"client_id":%q,"reason":"rotation done"}`, ts(now.Add(-5*time.Minute)), old, c))
		ip := fmt.Sprintf("198.51.100.%d", 10+i)
		for j := range 120 {
			traffic = append(traffic, fmt.Appendf(nil, `{"ts":%q,"key_id":%q,"client_id":%q,"ip":%q,"user_agent":"sdk/1","status":200,"route":"/v1/prices"}`,
				ts(now.Add(-60*time.Minute+time.Duration(j)*27*time.Second)), old, c, ip))
		}
		for j := range 40 {
			traffic = append(traffic, fmt.Appendf(nil, `{"ts":%q,"key_id":%q,"client_id":%q,"ip":%q,"user_agent":"sdk/1","status":401,"outcome":"revoked_key","route":"/v1/prices"}`,
				ts(now.Add(-4*time.Minute+time.Duration(j)*5*time.Second)), old, c, ip))
		}
	}
	if err := kafka.Produce(ctx, "key-lifecycle", lifecycle...); err != nil {
		t.Fatal(err)
	}
	if err := kafka.Produce(ctx, "auth-events", traffic...); err != nil {
		t.Fatal(err)
	}

	// acme: the alert offers a rollback; nothing is sent before the click.
	var buttonID string
	waitUntil(t, "a Roll back button for acme in Slack", func() bool {
		buttonID = slackFake.button("keywatch_rollback", "acme")
		return buttonID != ""
	})
	if b := slackFake.button("keywatch_approve", "acme"); b != "" {
		t.Errorf("acme's alert offers a revoke (%s), want only the rollback", b)
	}
	// The button names the action whose webhook-id derives from the alert episode.
	var spike alerting.Alert
	if err := conn.QueryRow(ctx, `SELECT fingerprint, fired_at FROM alerts FINAL WHERE detector = 'spike' AND client_id = 'acme'`).Scan(&spike.Fingerprint, &spike.FiredAt); err != nil {
		t.Fatal(err)
	}
	if want := action.ActionID(action.KindExtendGrace, "kid_acme_old", spike.ID()); buttonID != want {
		t.Errorf("Roll back button value %q, want the action id %q", buttonID, want)
	}

	// globex-pay: auto for a critical client; initech: refused, its key is considered leaked.
	waitUntil(t, "globex-pay's extend_grace delivered after one 500", func() bool { return len(receiver.forKey("kid_globex_old")) == 2 })
	waitUntil(t, "initech's rollback refused and audited", func() bool {
		var n uint64
		_ = conn.QueryRow(ctx, `SELECT count() FROM action_audit WHERE key_id = 'kid_initech_old' AND kind = 'extend_grace' AND event = 'refused' AND guardrail = 'leaked'`).Scan(&n)
		return n == 1
	})
	// The API refuses it too (bearer-checked first).
	for auth, want := range map[string]int{"": http.StatusUnauthorized, "api-token-rollback-0123456789abcdef": http.StatusConflict} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/keys/kid_initech_old/rollback", strings.NewReader(`{"action":"reactivate","actor":"bob"}`))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == http.StatusConflict && !strings.Contains(string(b), "leak")) {
			t.Errorf("POST rollback of the leaked key with token %q: %d %s, want %d", auth, resp.StatusCode, b, want)
		}
	}
	if got := receiver.forKey("kid_acme_old"); len(got) != 0 {
		t.Fatalf("acme's rollback sent before any click: %v", got)
	}

	// A forged click does nothing; a correctly signed one by an approver sends the rollback.
	clickBody := rbClick("U_ALICE", buttonID)
	if code := rbPostInteraction(t, httpAddr, clickBody, "not-the-secret"); code != http.StatusUnauthorized {
		t.Errorf("forged click: %d, want 401", code)
	}
	if code := rbPostInteraction(t, httpAddr, clickBody, signing); code != http.StatusOK {
		t.Fatalf("signed click: %d, want 200", code)
	}
	waitUntil(t, "acme's extend_grace delivered after one 500", func() bool { return len(receiver.forKey("kid_acme_old")) == 2 })

	clicked := time.Now().UTC()
	for _, c := range []struct {
		key, mode string
		audit     []string
	}{
		{"kid_acme_old", "approve", []string{"awaiting_approval/", "approved/", "attempt_failed/", "sent/"}},
		{"kid_globex_old", "auto", []string{"decided/", "attempt_failed/", "sent/"}},
	} {
		got := receiver.forKey(c.key)
		if got[0].id != got[1].id || got[0].body != got[1].body || got[0].status != 500 || got[1].status != 200 {
			t.Errorf("%s deliveries %+v: want the same webhook-id and body, answered 500 then 200", c.key, got)
		}
		var b map[string]any
		json.Unmarshal([]byte(got[0].body), &b)
		if b["action"] != "extend_grace" || b["mode"] != c.mode || b["key_id"] != c.key || b["rotation_id"] == "" {
			t.Errorf("%s body %s", c.key, got[0].body)
		}
		until, err := time.Parse(time.RFC3339, fmt.Sprint(b["grace_until"]))
		if err != nil || until.Before(now.Add(23*time.Hour)) || until.After(clicked.Add(24*time.Hour)) {
			t.Errorf("%s grace_until %v: want about a day from the decision (the old deadline had passed)", c.key, b["grace_until"])
		}
		// The receiver may see the retry just before the daemon records its answer.
		var events []string
		waitUntilFor(t, c.key+"'s audit", 10*time.Second, func() bool {
			events = nil
			rows, err := conn.Query(ctx, `SELECT event, guardrail FROM action_audit WHERE action_id = ? ORDER BY at`, got[0].id)
			if err != nil {
				return false
			}
			defer rows.Close()
			for rows.Next() {
				var ev, g string
				rows.Scan(&ev, &g)
				events = append(events, ev+"/"+g)
			}
			return len(events) >= len(c.audit)
		})
		if !slices.Equal(events, c.audit) {
			t.Errorf("%s audit %v, want %v", c.key, events, c.audit)
		}
	}
	if len(receiver.forKey("kid_initech_old")) != 0 {
		t.Errorf("initech's leaked key was rolled back")
	}
	if id := receiver.forKey("kid_acme_old")[0].id; id != buttonID {
		t.Errorf("webhook-id %q, want the approved action %q", id, buttonID)
	}

	// The grace is extended: acme's requests succeed again, and the spike alert resolves.
	var recovered [][]byte
	at := time.Now().UTC()
	for j := range 1500 {
		recovered = append(recovered, fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_acme_old","client_id":"acme","ip":"198.51.100.10","user_agent":"sdk/1","status":200,"route":"/v1/prices"}`,
			ts(at.Add(-time.Duration(j)*10*time.Millisecond))))
	}
	if err := kafka.Produce(ctx, "auth-events", recovered...); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "acme's spike alert resolved", func() bool {
		var state string
		_ = conn.QueryRow(ctx, `SELECT toString(state) FROM alerts FINAL WHERE detector = 'spike' AND client_id = 'acme'`).Scan(&state)
		return state == "resolved"
	})
	var globex string
	_ = conn.QueryRow(ctx, `SELECT toString(state) FROM alerts FINAL WHERE detector = 'spike' AND client_id = 'globex-pay'`).Scan(&globex)
	if globex != "firing" {
		t.Errorf("globex-pay's spike alert %q, want still firing (its traffic did not recover)", globex)
	}
	if n := len(receiver.all()); n != 4 {
		t.Errorf("%d webhook deliveries, want 4 (two actions, each retried once)", n)
	}
}

// rbSlack is slacktest recording the blocks of every message posted or updated.
type rbSlack struct {
	srv    *slacktest.Server
	mu     sync.Mutex
	blocks []string
}

func newRBSlack(t *testing.T) *rbSlack {
	s := &rbSlack{}
	record := func(method string) slacktest.Binder {
		return func(c slacktest.Customize) {
			c.Handle("/"+method, func(w http.ResponseWriter, req *http.Request) {
				req.ParseForm()
				s.mu.Lock()
				s.blocks = append(s.blocks, req.FormValue("blocks"))
				s.mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"%d.000100"}`, req.FormValue("channel"), time.Now().UnixNano())
			})
		}
	}
	history := func(c slacktest.Customize) {
		c.Handle("/conversations.history", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true,"messages":[],"has_more":false}`)
		})
	}
	s.srv = slacktest.NewTestServer(record("chat.postMessage"), record("chat.update"), history)
	s.srv.Start()
	t.Cleanup(s.srv.Stop)
	return s
}

// button returns the value of the latest button actionID in a message that mentions client.
func (s *rbSlack) button(actionID, client string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.blocks) - 1; i >= 0; i-- {
		if !strings.Contains(s.blocks[i], client) {
			continue
		}
		var blocks []struct {
			Type     string `json:"type"`
			Elements []struct {
				ActionID string `json:"action_id"`
				Value    string `json:"value"`
			} `json:"elements"`
		}
		json.Unmarshal([]byte(s.blocks[i]), &blocks)
		for _, b := range blocks {
			for _, e := range b.Elements {
				if b.Type == "actions" && e.ActionID == actionID {
					return e.Value
				}
			}
		}
	}
	return ""
}

// rbClick is the form body of a click on a button actionValue by user.
func rbClick(user, actionValue string) string {
	p, _ := json.Marshal(map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "name": "alice"},
		"message": map[string]any{"type": "message", "text": "spike", "blocks": []any{}},
		"actions": []any{map[string]any{"type": "button", "action_id": "keywatch_rollback", "value": actionValue, "block_id": "b"}},
	})
	return "payload=" + url.QueryEscape(string(p))
}

// rbPostInteraction posts body to /slack/interactions signed with secret, as Slack does.
func rbPostInteraction(t *testing.T, httpAddr, body, secret string) int {
	t.Helper()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
