package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// detectorsOff stops the scheduled detectors: these tests supply the findings themselves.
const detectorsOff = `detect:
  leak: {schedule: ""}
  lingering: {schedule: ""}
  spike: {schedule: ""}
  hygiene: {schedule: ""}`

// TestLeakReportIsAlertedAndRevokedOnce follows a leaked key through the whole daemon: its traffic
// arrives through Kafka, GitHub reports the raw secret to POST /v1/leaks, and keywatch posts one
// Slack message and sends one signed revoke under an auto policy, and nothing more after a restart;
// the alert is also posted to the configured Alertmanager. A report with a bad signature changes
// nothing.
func TestLeakReportIsAlertedAndRevokedOnce(t *testing.T) {
	const (
		leaked        = "sk_live_0123456789leakedsecretABCDEF"
		webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		githubKeyID   = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
	)
	slackFake := newSlackRecorder(t)
	receiver := newWebhookReceiver(t, webhookSecret, false)
	alertmanager := newAlertmanagerRecorder(t)

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pemPath := filepath.Join(t.TempDir(), "github.pem")
	os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	db, kafka, httpAddr, cfgPath := runSetup(t, 1, fmt.Sprintf(`
%s
alerting:
  evaluate_interval: 1s
  group_wait: 0s
  group_interval: 1s
slack:
  api_url: %q
  default_channel: "#keywatch"
  min_interval: 100ms
revoke:
  webhook_url: %q
  retry_for: 1m
  policies: [{detector: "leak*", mode: auto}]
leak_reports:
  github_keys: [%q]
  github_key_ids: [%q]
alertmanager:
  urls: [%q]
`, detectorsOff, slackFake.URL(), receiver.URL, pemPath, githubKeyID, alertmanager.srv.URL))
	t.Setenv("KEYWATCH_SLACK_TOKEN", "xoxb-test-token")
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", webhookSecret)
	kw := startKeywatch(t, cfgPath)

	now := time.Now().UTC()
	var traffic [][]byte
	for i := range 20 {
		traffic = append(traffic, fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_live_leaky","api_key":%q,"client_id":"initech-billing","ip":"203.0.113.9","status":200}`,
			now.Add(-time.Duration(i)*time.Minute).Format(time.RFC3339Nano), leaked))
	}
	if err := kafka.Produce(context.Background(), "auth-events", traffic...); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	waitUntil(t, "the leaky key's traffic stored", func() bool {
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM auth_events WHERE key_id = 'kid_live_leaky'").Scan(&n)
		return n == 20
	})

	report := func(body string, sign *ecdsa.PrivateKey) (int, string) {
		digest := sha256.Sum256([]byte(body))
		sig, _ := ecdsa.SignASN1(rand.Reader, sign, digest[:])
		req, _ := http.NewRequest("POST", "http://"+httpAddr+"/v1/leaks", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Github-Public-Key-Identifier", githubKeyID)
		req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	body := fmt.Sprintf(`[{"token":%q,"type":"keywatch_api_key","url":"https://github.com/octo/leaky/blob/main/.env","source":"content"}]`, leaked)

	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if code, resp := report(body, forger); code != http.StatusUnauthorized {
		t.Fatalf("report signed by another key: %d %s, want 401", code, resp)
	}
	time.Sleep(3 * time.Second) // several evaluation cycles: a forged report must change nothing
	if n := receiver.count(); n != 0 {
		t.Fatalf("a forged report led to %d revoke requests", n)
	}

	if code, resp := report(body, priv); code != http.StatusOK || strings.Contains(resp, leaked) {
		t.Fatalf("signed report: %d %s, want 200 without the raw token", code, resp)
	}
	waitUntil(t, "one revoke request", func() bool { return receiver.count() >= 1 })
	waitUntil(t, "one Slack message", func() bool { return slackFake.count("chat.postMessage") >= 1 })
	waitUntil(t, "the alert posted to Alertmanager", func() bool {
		return alertmanager.posted(`"alertname":"keywatch_leak_report"`, `"key_id":"kid_live_leaky"`)
	})

	out, err := kw.stop()
	if err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if strings.Contains(out, leaked) {
		t.Fatalf("the raw secret reached the log")
	}
	kw = startKeywatch(t, cfgPath)
	defer kw.stop()
	time.Sleep(5 * time.Second) // several evaluation cycles after the restart

	ids := receiver.ids()
	if len(ids) != 1 {
		t.Fatalf("revoke requests with webhook-ids %v, want exactly one", ids)
	}
	var got map[string]any
	json.Unmarshal([]byte(receiver.accepted()[0].body), &got)
	if got["key_id"] != "kid_live_leaky" || got["client_id"] != "initech-billing" || got["mode"] != "auto" {
		t.Fatalf("revoke body %v", got)
	}
	if n := slackFake.count("chat.postMessage"); n != 1 {
		t.Fatalf("%d Slack messages posted, want 1", n)
	}
	var stored string
	_ = conn.QueryRow(context.Background(), "SELECT groupConcat(evidence) FROM findings WHERE detector = 'leak_report'").Scan(&stored)
	if !strings.Contains(stored, "github.com/octo/leaky") || strings.Contains(stored, leaked) {
		t.Fatalf("leak_report evidence %q: want the report's URL and never the raw secret", stored)
	}
}

// alertmanagerRecorder stands in for Alertmanager's POST /api/v2/alerts and keeps every body (the
// alertmanager package's tests run the real one).
type alertmanagerRecorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newAlertmanagerRecorder(t *testing.T) *alertmanagerRecorder {
	r := &alertmanagerRecorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if req.Method != http.MethodPost || req.URL.Path != "/api/v2/alerts" {
			http.NotFound(w, req)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// posted says whether a body posted so far holds every one of parts.
func (r *alertmanagerRecorder) posted(parts ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bodies {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(b, p)
		}
		if all {
			return true
		}
	}
	return false
}

// slackRecorder is slack-go's slacktest server that records every Web API call by method.
type slackRecorder struct {
	srv   *slacktest.Server
	mu    sync.Mutex
	calls map[string]int
	texts []string // of every message posted or updated
}

func newSlackRecorder(t *testing.T) *slackRecorder {
	r := &slackRecorder{calls: map[string]int{}}
	record := func(method string, answer func(w http.ResponseWriter, req *http.Request)) slacktest.Binder {
		return func(c slacktest.Customize) {
			c.Handle("/"+method, func(w http.ResponseWriter, req *http.Request) {
				req.ParseForm()
				r.mu.Lock()
				r.calls[method]++
				if t := req.FormValue("text"); t != "" {
					r.texts = append(r.texts, t)
				}
				r.mu.Unlock()
				answer(w, req)
			})
		}
	}
	ts := func(w http.ResponseWriter, req *http.Request) {
		req.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"%d.000100"}`, req.FormValue("channel"), time.Now().UnixNano())
	}
	empty := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true,"messages":[],"has_more":false}`)
	}
	r.srv = slacktest.NewTestServer(record("chat.postMessage", ts), record("chat.update", ts), record("conversations.history", empty))
	r.srv.Start()
	t.Cleanup(r.srv.Stop)
	return r
}

func (r *slackRecorder) URL() string { return r.srv.GetAPIURL() }

// posted counts the messages posted or updated whose text contains s.
func (r *slackRecorder) posted(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.texts {
		if strings.Contains(t, s) {
			n++
		}
	}
	return n
}

func (r *slackRecorder) count(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method]
}

// webhookReceiver is an action webhook endpoint (the key-management system's side): it checks each
// request's Standard Webhooks signature and records it. With failFirst it answers 500 to the first
// delivery of each webhook-id, so the sender has to retry.
type webhookReceiver struct {
	*httptest.Server
	failFirst bool
	mu        sync.Mutex
	got       []delivery
}

// delivery is one correctly signed webhook request and what the receiver answered.
type delivery struct {
	id, body string
	status   int
}

func newWebhookReceiver(t *testing.T, secret string, failFirst bool) *webhookReceiver {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	r := &webhookReceiver{failFirst: failFirst}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if !slices.Contains(strings.Fields(req.Header.Get("webhook-signature")), want) {
			t.Errorf("webhook %s with a bad signature %q", id, req.Header.Get("webhook-signature"))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		status := http.StatusOK
		if r.failFirst && !slices.ContainsFunc(r.got, func(d delivery) bool { return d.id == id }) {
			status = http.StatusInternalServerError
		}
		r.got = append(r.got, delivery{id, string(body), status})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

// all is every signed request, refused ones included.
func (r *webhookReceiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// accepted is every request answered 200, repeats of a webhook-id included.
func (r *webhookReceiver) accepted() []delivery {
	return slices.DeleteFunc(r.all(), func(d delivery) bool { return d.status != http.StatusOK })
}

// ids are the webhook-ids accepted, each once, in order.
func (r *webhookReceiver) ids() []string {
	var ids []string
	for _, d := range r.accepted() {
		if !slices.Contains(ids, d.id) {
			ids = append(ids, d.id)
		}
	}
	return ids
}

func (r *webhookReceiver) count() int      { return len(r.ids()) }
func (r *webhookReceiver) deliveries() int { return len(r.accepted()) }

// forKey is every signed request for key, refused ones included.
func (r *webhookReceiver) forKey(key string) []delivery {
	return slices.DeleteFunc(r.all(), func(d delivery) bool { return !strings.Contains(d.body, `"key_id":"`+key+`"`) })
}

// TestPersistentFindingIsOneSlackMessageUpdatedOnResolve stores a finding run after run, as a
// detector would, then a successful run without it: Slack gets one message, updated (and answered
// in its thread) when the alert resolves, and a restart in between sends nothing twice. Requests
// to the revoke API and to /slack/interactions without valid credentials are refused and audited.
func TestPersistentFindingIsOneSlackMessageUpdatedOnResolve(t *testing.T) {
	slackFake := newSlackRecorder(t)
	db, _, httpAddr, cfgPath := runSetup(t, 1, fmt.Sprintf(`
%s
alerting:
  evaluate_interval: 1s
  group_wait: 0s
  group_interval: 1s
  resolve_after: {default: 2s}
slack:
  api_url: %q
  default_channel: "#keywatch"
  min_interval: 100ms
`, detectorsOff, slackFake.URL()))
	const token = "api-token-0123456789abcdef0123456789"
	t.Setenv("KEYWATCH_SLACK_TOKEN", "xoxb-test-token")
	t.Setenv("KEYWATCH_SLACK_SIGNING_SECRET", "slack-signing-secret-0123456789abcdef")
	t.Setenv("KEYWATCH_HTTP_TOKEN", token)
	kw := startKeywatch(t, cfgPath)
	conn := ch.Conn(t, db)
	ctx := context.Background()
	kw.waitReady(t, httpAddr)

	run := func(i int, found bool) {
		t.Helper()
		now := time.Now().UTC()
		id := fmt.Sprintf("run-%d", i)
		n := 0
		if found {
			n = 1
			if err := conn.Exec(ctx, `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
				VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, 'spike', 'fp-spike-acme', 'critical', 9.5, 'kid_old', 'acme', 'kid_old>kid_new', 'acme: 60% of requests failed after kid_old was retired', ?)`, now.UnixMilli(), id, `{"failures":120}`); err != nil {
				t.Fatal(err)
			}
		}
		if err := conn.Exec(ctx, `INSERT INTO detector_runs (run_id, detector, started_at, finished_at, findings, error) VALUES (?, 'spike', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, '')`,
			id, now.UnixMilli(), now.UnixMilli(), uint32(n)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 { // the finding persists for several cycles
		run(i, true)
		time.Sleep(time.Second)
	}
	waitUntil(t, "one Slack message", func() bool { return slackFake.count("chat.postMessage") >= 1 })

	// Credentials that are missing, wrong or forged revoke nothing.
	post := func(path, auth string, hdr map[string]string, body string) int {
		req, _ := http.NewRequest("POST", "http://"+httpAddr+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/v1/keys/kid_old/revoke", "", nil, `{"reason":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("revoke without a token: %d, want 401", code)
	}
	if code := post("/v1/keys/kid_old/revoke", "wrong-token", nil, `{"reason":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("revoke with a wrong token: %d, want 401", code)
	}
	forged := map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"X-Slack-Request-Timestamp": fmt.Sprint(time.Now().Unix()), "X-Slack-Signature": "v0=" + strings.Repeat("0", 64)}
	if code := post("/slack/interactions", "", forged, "payload=%7B%7D"); code != http.StatusUnauthorized {
		t.Errorf("forged Slack interaction: %d, want 401", code)
	}
	// Refusals are counted, not stored: an unauthenticated caller must not be able to write.
	_, metrics := get(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{
		`keywatch_http_refused_total{reason="missing or wrong token",source="api"} 2`,
		`keywatch_http_refused_total{reason="bad_signature",source="slack"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var audited uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM action_audit").Scan(&audited); err != nil || audited != 0 {
		t.Errorf("action_audit holds %d rows (%v) after three refused requests, want none", audited, err)
	}

	out, err := kw.stop() // restart while the alert fires
	if err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	kw = startKeywatch(t, cfgPath)
	defer kw.stop()
	run(4, true)
	time.Sleep(3 * time.Second)
	if n := slackFake.count("chat.postMessage"); n != 1 {
		t.Fatalf("after a restart: %d messages posted, want still 1", n)
	}

	time.Sleep(2 * time.Second) // resolve_after passes; a successful run without the finding resolves it
	run(5, false)
	waitUntil(t, "the message updated on resolve", func() bool { return slackFake.count("chat.update") >= 1 })
	time.Sleep(3 * time.Second)
	if p, u := slackFake.count("chat.postMessage"), slackFake.count("chat.update"); p != 2 || u != 1 {
		t.Fatalf("after resolving: %d chat.postMessage (the message and its thread reply), %d chat.update; want 2 and 1", p, u)
	}
	var state string
	_ = conn.QueryRow(ctx, "SELECT toString(state) FROM alerts FINAL WHERE fingerprint = 'fp-spike-acme'").Scan(&state)
	if state != "resolved" {
		t.Fatalf("alert state %q, want resolved", state)
	}
}
