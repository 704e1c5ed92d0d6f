package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/dashboards"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/notify"
	"github.com/keywatch/keywatch/webhook"
)

// TestDemoReceiverVerifiesSignatures: the demo's revoke receiver takes what keywatch signs and
// refuses a changed body, an old timestamp, another secret and missing headers.
func TestDemoReceiverVerifiesSignatures(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(demoWebhookSecret, "whsec_"))
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	body := `{"key_id":"kid_live_x","action":"revoke"}`
	for _, tc := range []struct {
		name, id, body string
		signedBody     string
		signKey        []byte
		at             time.Time
		noHeaders      bool
		want           int
	}{
		{name: "signed", id: "act_1", body: body, signedBody: body, signKey: key, at: now, want: http.StatusOK},
		{name: "body changed", id: "act_1", body: strings.Replace(body, "kid_live_x", "kid_live_y", 1), signedBody: body, signKey: key, at: now, want: http.StatusUnauthorized},
		{name: "ten minutes old", id: "act_1", body: body, signedBody: body, signKey: key, at: now.Add(-10 * time.Minute), want: http.StatusUnauthorized},
		{name: "other secret", id: "act_1", body: body, signedBody: body, signKey: []byte("another-secret-of-32-bytes-long!"), at: now, want: http.StatusUnauthorized},
		{name: "no headers", body: body, noHeaders: true, want: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []receivedRevoke
			rr := newDemoReceiver(demoWebhookSecret, func(r receivedRevoke) { got = append(got, r) })
			rr.now = func() time.Time { return now }
			req := httptest.NewRequest(http.MethodPost, "/revoke", strings.NewReader(tc.body))
			if !tc.noHeaders {
				req.Header.Set("webhook-id", tc.id)
				req.Header.Set("webhook-timestamp", strconv.FormatInt(tc.at.Unix(), 10))
				req.Header.Set("webhook-signature", "v1,bm90LXRoaXMtb25l "+webhook.Sign(tc.signKey, tc.id, tc.at, []byte(tc.signedBody)))
			}
			w := httptest.NewRecorder()
			rr.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if len(got) != 1 || got[0].Verified != (tc.want == http.StatusOK) || got[0].Body != tc.body {
				t.Fatalf("reported %+v", got)
			}
		})
	}
}

// TestDemoSlackShowsWhatTheSenderPosts runs keywatch's Slack sender against the demo's stand-in
// of the Slack API: the message shows in plain text from its Block Kit blocks, and with an
// upstream every call is passed on with the bot token.
func TestDemoSlackShowsWhatTheSenderPosts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := config.Default()
	_, conn := migratedDB(t)

	var mu sync.Mutex
	var calls []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		token := r.Form.Get("token")
		if token == "" {
			token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		mu.Lock()
		calls = append(calls, r.URL.Path+" "+token+" "+strconv.FormatBool(r.Form.Get("blocks") != ""))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"channel":"C123","ts":"1795650000.000100"}`)
	}))
	defer upstream.Close()

	shown := make(chan string, 10)
	url, stop, err := serveLocal(newTerminalSlack(upstream.URL+"/api/", func(s string) { shown <- s }))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cfg.Slack.Token, cfg.Slack.APIURL, cfg.Slack.MinInterval = "xoxb-demo-test", url+"/", config.Duration(10*time.Millisecond)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sender := notify.NewSlack(conn, cfg.Slack, notify.NewMetrics(prometheus.NewRegistry()), log)
	go sender.Run(ctx)

	now := time.Now().UTC()
	err = sender.Notify(ctx, alerting.Notification{Channel: "#keywatch-demo", Group: alerting.Group{
		Key: "rotation:kid_live_acme_old>kid_live_acme_new", ClientID: "acme-billing", UpdatedAt: now,
		Alerts: []alerting.Alert{{
			Fingerprint: "fp-acme", Detector: "lingering", KeyID: "kid_live_acme_old", ClientID: "acme-billing",
			RotationID: "kid_live_acme_old>kid_live_acme_new", Severity: finding.Critical, Score: 14,
			Summary: "acme-billing still calls kid_live_acme_old", State: alerting.Firing,
			ActiveSince: now, FiredAt: now, LastSeen: now,
			Action: &alerting.ActionStatus{ID: "act_1", Kind: "revoke", Mode: "dry-run", Status: "dry_run", Detail: "dry run: a revoke would be requested"},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	select {
	case text = <-shown:
	case <-time.After(30 * time.Second):
		t.Fatal("no message shown")
	}
	for _, want := range []string{
		"┃ Slack #keywatch-demo, new message:",
		"🔴 CRITICAL — lingering on rotation kid_live_acme_old>kid_live_acme_new",
		"acme-billing still calls kid_live_acme_old",
		"Key: `kid_live_acme_old`",
		"Client: acme-billing",
		"⚡ dry-run: would revoke (dry run: a revoke would be requested)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("shown message lacks %q:\n%s", want, text)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0] != "/api/chat.postMessage xoxb-demo-test true" {
		t.Fatalf("upstream got %q, want one chat.postMessage with the token and blocks", calls)
	}
}

// TestGrafanaCommandsSetEveryDataSourceVariable: the docker command the demo prints and the
// documentation's (README.md, docs/) give Grafana every variable its data source provisioning reads.
func TestGrafanaCommandsSetEveryDataSourceVariable(t *testing.T) {
	ds, err := fs.ReadFile(dashboards.Files, "provisioning/datasources/clickhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	printDemoData(&printed, "demo-data")
	vars := regexp.MustCompile(`(?m)^[^#\n]*\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(ds), -1)
	if len(vars) != 7 {
		t.Fatalf("the data source reads %d variables, want the 7 the README lists", len(vars))
	}
	for _, v := range vars {
		for where, text := range map[string]string{"the demo's output": printed.String(), "README.md and docs/": readDocs(t)} {
			if !strings.Contains(text, "-e "+v[1]+"=") {
				t.Errorf("%s: the Grafana command does not set %s", where, v[1])
			}
		}
	}
}

// readDocs is README.md and every page under docs/, one after the other.
func readDocs(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob("../docs/*.md")
	var b strings.Builder
	for _, f := range append([]string{"../README.md"}, files...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}
