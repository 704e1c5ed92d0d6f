package action

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

var testSecret = "whsec_" + base64.StdEncoding.EncodeToString(testKey)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is the tests' injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// delivery is one request the receiver accepted as correctly signed.
type delivery struct {
	ID   string
	Body string
}

// receiver is a revoke webhook receiver that verifies the Standard Webhooks signature on its own,
// answers from a script (then 200) and records what it was sent.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	script []func(w http.ResponseWriter)
	got    []delivery
}

func newReceiver(t *testing.T, script ...func(w http.ResponseWriter)) *receiver {
	rv := &receiver{t: t, script: script}
	rv.srv = httptest.NewServer(http.HandlerFunc(rv.serve))
	t.Cleanup(rv.srv.Close)
	return rv
}

func (rv *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil || id == "" {
		rv.t.Errorf("receiver: webhook-id %q, webhook-timestamp %q", id, ts)
	}
	mac := hmac.New(sha256.New, testKey)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !slices.Contains(strings.Fields(r.Header.Get("webhook-signature")), want) {
		rv.t.Errorf("receiver: webhook-signature %q, want %q", r.Header.Get("webhook-signature"), want)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rv.mu.Lock()
	rv.got = append(rv.got, delivery{id, string(body)})
	var answer func(http.ResponseWriter)
	if len(rv.script) > 0 {
		answer, rv.script = rv.script[0], rv.script[1:]
	}
	rv.mu.Unlock()
	if answer == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	answer(w)
}

func (rv *receiver) deliveries() []delivery {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return slices.Clone(rv.got)
}

func answer(code int) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.WriteHeader(code); io.WriteString(w, "nope: "+http.StatusText(code)) }
}

// env is a migrated database, a receiver and a Revoker with a fake clock.
type env struct {
	t    *testing.T
	ctx  context.Context
	conn driver.Conn
	cfg  config.Revoke
	rv   *receiver
	clk  *clock
	m    *Metrics
	r    *Revoker
}

func newEnv(t *testing.T, mutate func(*config.Revoke), script ...func(http.ResponseWriter)) *env {
	t.Helper()
	ctx := context.Background()
	_, conn := schematest.NewDatabase(t, ch)
	e := &env{t: t, ctx: ctx, conn: conn, rv: newReceiver(t, script...), clk: &clock{t: t0}}
	e.cfg = config.Default().Revoke
	e.cfg.WebhookURL, e.cfg.WebhookSecret = e.rv.srv.URL, testSecret
	e.cfg.DefaultMode, e.cfg.Policies = "auto", nil
	e.cfg.MinScore, e.cfg.MaxPerHour = 50, 3
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.m = NewMetrics(prometheus.NewRegistry())
	e.r = e.revoker()
	return e
}

// revoker is a new Revoker over the same database (a restarted process).
func (e *env) revoker() *Revoker {
	r := New(e.conn, e.cfg, e.m, nil)
	r.now = e.clk.Now
	r.rand = func(n int64) int64 { return n / 2 }
	r.poll, r.awaitPoll = 5*time.Millisecond, 5*time.Millisecond
	return r
}

// lead runs r's leader loop (Run) until the test ends, as the elected replica does.
func (e *env) lead(r *Revoker) {
	e.t.Helper()
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	e.t.Cleanup(func() { stop(); <-done })
}

// await is Await with a bound far above what the test needs; it fails the test when the action
// is still undecided then.
func (e *env) await(r *Revoker, id string) (*alerting.ActionStatus, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	st, err := r.Await(ctx, id)
	if errors.Is(err, context.DeadlineExceeded) {
		e.t.Fatalf("action %s still undecided after a minute: %+v", id, st)
	}
	return st, err
}

func alert(detector, key string, score float64) alerting.Alert {
	return alerting.Alert{
		Fingerprint: "fp_" + detector + "_" + key, Detector: detector, KeyID: key, ClientID: "client_" + key,
		Severity: 3, Score: score, Summary: "test", State: alerting.Firing, ActiveSince: t0.Add(-time.Hour), FiredAt: t0.Add(-time.Minute),
	}
}

func (e *env) consider(a alerting.Alert) *alerting.ActionStatus {
	e.t.Helper()
	st, err := e.r.Consider(e.ctx, a)
	if err != nil {
		e.t.Fatalf("Consider(%s): %v", a.KeyID, err)
	}
	return st
}

func (e *env) sendDue() {
	e.t.Helper()
	if err := e.r.SendDue(e.ctx); err != nil {
		e.t.Fatalf("SendDue: %v", err)
	}
}

// audit returns "event/guardrail/http_status" of an action's audit rows in time order. The fake
// clock stands still within a leader's pass, which decides then sends: at one time, the decision
// comes first.
func (e *env) audit(actionID string) []string {
	e.t.Helper()
	rows, err := e.conn.Query(e.ctx, `SELECT event, guardrail, http_status FROM action_audit WHERE action_id = ?
ORDER BY at, event IN ('attempt_failed', 'sent', 'failed')`, actionID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ev, g string
		var code uint16
		if err := rows.Scan(&ev, &g, &code); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev+"/"+g+"/"+strconv.Itoa(int(code)))
	}
	return out
}

func (e *env) count(q string, args ...any) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.conn.QueryRow(e.ctx, q, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) lifecycle(ts time.Time, typ, key, client, newKey string) {
	e.t.Helper()
	if err := e.conn.Exec(e.ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, ?, ?, NULL, '', 0, 0)`, ts.UnixMilli(), typ, key, client, newKey); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) load(id string) *record {
	e.t.Helper()
	rec, err := e.r.store.load(e.ctx, id)
	if err != nil || rec == nil {
		e.t.Fatalf("load %s: %v %v", id, rec, err)
	}
	return rec
}

// (a) 500 twice then 200: one decision, three attempts with the same webhook-id and body.
func TestAutoRetriesWithSameIDAndBody(t *testing.T) {
	e := newEnv(t, nil, answer(500), answer(503))
	a := alert("leak", "kid_a", 100)
	st := e.consider(a)
	if st == nil || st.Status != "queued" || st.ID != ActionID(KindRevoke, "kid_a", a.ID()) {
		t.Fatalf("Consider: %+v, want queued with the deterministic id", st)
	}
	if again := e.consider(a); *again != *st {
		t.Errorf("second Consider: %+v, want the stored %+v", again, st)
	}
	for range 10 {
		e.clk.Add(10 * time.Minute)
		e.sendDue()
	}
	got := e.rv.deliveries()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for _, d := range got {
		if d.ID != st.ID || d.Body != got[0].Body {
			t.Errorf("delivery %+v, want id %s and body %s", d, st.ID, got[0].Body)
		}
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(got[0].Body), &body); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"key_id": "kid_a", "client_id": "client_kid_a", "alert_id": a.ID(), "mode": "auto", "action": "revoke", "requested_at": "2026-11-25T12:00:00Z"} {
		if body[k] != want {
			t.Errorf("body[%s] = %v, want %v", k, body[k], want)
		}
	}
	want := []string{"decided//0", "attempt_failed//500", "attempt_failed//503", "sent//200"}
	if a := e.audit(st.ID); !slices.Equal(a, want) {
		t.Errorf("audit %v, want %v", a, want)
	}
	if n := e.count(`SELECT count() FROM actions FINAL`); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
	if rec := e.load(st.ID); rec.State != stateSent || rec.Attempts != 3 {
		t.Errorf("action %s after %d attempts, want sent after 3", rec.State, rec.Attempts)
	}
	for name, c := range map[string]prometheus.Metric{
		"sent": e.m.revokes.WithLabelValues("sent"), "500": e.m.attempts.WithLabelValues("500"),
		"503": e.m.attempts.WithLabelValues("503"), "200": e.m.attempts.WithLabelValues("200"),
	} {
		if v := value(c); v != 1 {
			t.Errorf("metric %s = %g, want 1", name, v)
		}
	}
	if v := value(e.m.queued); v != 0 {
		t.Errorf("keywatch_actions_queued = %g, want 0", v)
	}
}

// Retries stop after retry_for: the action fails.
func TestRetryForEnds(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.RetryFor = config.Duration(10 * time.Second) }, answer(500), answer(500), answer(500), answer(500), answer(500), answer(500))
	st := e.consider(alert("leak", "kid_a", 100))
	for range 8 {
		e.clk.Add(time.Minute)
		e.sendDue()
	}
	rec := e.load(st.ID)
	if rec.State != stateFailed {
		t.Fatalf("state %s, want failed", rec.State)
	}
	a := e.audit(st.ID)
	if a[len(a)-1] != "failed//500" || len(e.rv.deliveries()) != int(rec.Attempts) {
		t.Errorf("audit %v, %d deliveries for %d attempts", a, len(e.rv.deliveries()), rec.Attempts)
	}
}

// (b) Killed between send and record: a new Revoker re-sends the same webhook-id, no second action.
func TestRestartAfterSendResendsSameID(t *testing.T) {
	e := newEnv(t, nil)
	a := alert("leak", "kid_a", 100)
	st := e.consider(a)
	e.r.afterSend = func(string) bool { return true } // the process dies after the receiver answered
	_ = e.r.SendDue(e.ctx)
	if rec := e.load(st.ID); rec.State != stateQueued || rec.Attempts != 0 {
		t.Fatalf("after the crash: %s with %d attempts, want queued with none recorded", rec.State, rec.Attempts)
	}

	e.r = e.revoker() // restart
	if again := e.consider(a); again.ID != st.ID {
		t.Errorf("Consider after restart: id %s, want %s", again.ID, st.ID)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	got := e.rv.deliveries()
	if len(got) != 2 || got[0].ID != st.ID || got[1].ID != st.ID || got[0].Body != got[1].Body {
		t.Errorf("deliveries %+v, want two of %s with one body", got, st.ID)
	}
	if n := e.count(`SELECT count() FROM actions FINAL`); n != 1 {
		t.Errorf("%d actions, want 1", n)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"decided//0", "sent//200"}) {
		t.Errorf("audit %v", a)
	}
}

// (c) A protected key is never revoked: not automatically, not by approval, not by hand.
func TestProtectedKeyNeverSent(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) {
		c.ProtectedKeys = []string{"kid_root*"}
		c.Policies = []config.RevokePolicy{{Keys: "kid_root_appr", Mode: "approve"}}
	})
	st := e.consider(alert("leak", "kid_root_1", 1e9))
	if st.Status != "skipped" || !strings.HasPrefix(st.Detail, GuardProtected) {
		t.Errorf("Consider: %+v, want skipped by protected", st)
	}
	st2 := e.consider(alert("leak", "kid_root_appr", 1e9))
	e.lifecycle(t0.Add(-48*time.Hour), "key.created", "kid_root_2", "c1", "")
	_, err := e.r.Manual(e.ctx, "kid_root_2", "incident 42", "cli")
	if !errors.Is(err, ErrProtected) {
		t.Errorf("Manual: %v, want ErrProtected", err)
	}
	e.clk.Add(time.Minute)
	e.sendDue()
	if n := len(e.rv.deliveries()); n != 0 {
		t.Errorf("receiver called %d times", n)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"skipped/protected/0"}) {
		t.Errorf("audit %v", a)
	}
	if a := e.audit(st2.ID); !slices.Equal(a, []string{"skipped/protected/0"}) {
		t.Errorf("audit of the approve policy %v", a)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE key_id = 'kid_root_2' AND event = 'refused' AND guardrail = 'protected' AND actor = 'cli'`); n != 1 {
		t.Errorf("%d refused rows for the manual revoke, want 1", n)
	}
}

// Issue #14 (5): revoke.protected_keys globs cover key ids with "/": kid_root_* covers
// kid_root_a/b, and projects/* a GCP key id. Neither is revoked, automatically or by hand.
func TestProtectedGlobCoversSlashes(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.ProtectedKeys = []string{"kid_root_*", "projects/*"} })
	for _, k := range []string{"kid_root_a/b", "projects/p/locations/global/keys/k"} {
		e.lifecycle(t0.Add(-time.Hour), "key.created", k, "c1", "")
		if st := e.consider(alert("leak", k, 1e9)); st == nil || st.Status != "skipped" || !strings.HasPrefix(st.Detail, GuardProtected) {
			t.Errorf("Consider(%s): %+v, want skipped by protected", k, st)
		}
		if _, err := e.r.Manual(e.ctx, k, "incident 7", "cli"); !errors.Is(err, ErrProtected) {
			t.Errorf("Manual(%s): %v, want ErrProtected", k, err)
		}
	}
	e.clk.Add(time.Minute)
	e.sendDue()
	if got := e.rv.deliveries(); len(got) != 0 {
		t.Errorf("protected keys revoked: %+v", got)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE guardrail = 'protected' AND event IN ('skipped', 'refused')`); n != 4 {
		t.Errorf("%d refusals by protected audited, want 4", n)
	}
}

// (d) max_per_hour N: N+1 firing alerts send N, the rest are skipped; the hour rolls.
func TestHourlyCap(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.MaxPerHour = 2 })
	var ids []string
	for _, k := range []string{"kid_1", "kid_2", "kid_3"} {
		e.clk.Add(time.Second)
		ids = append(ids, e.consider(alert("leak", k, 100)).ID)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if n := len(e.rv.deliveries()); n != 2 {
		t.Errorf("%d sent, want 2", n)
	}
	if a := e.audit(ids[2]); !slices.Equal(a, []string{"skipped/hourly_cap/0"}) {
		t.Errorf("audit of the third %v", a)
	}
	// A restarted process counts from the stored actions.
	e.r = e.revoker()
	if st := e.consider(alert("spike", "kid_4", 100)); st.Status != "skipped" {
		t.Errorf("fourth after restart: %+v, want skipped", st)
	}
	e.clk.Add(time.Hour)
	if st := e.consider(alert("spike", "kid_5", 100)); st.Status != "queued" {
		t.Errorf("an hour later: %+v, want queued", st)
	}
}

// In every mode, a score below max(revoke.min_score, policy min_score) is skipped (dry-run says it
// would be).
func TestMinScore(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) {
		c.Policies = []config.RevokePolicy{{Detector: "spike", Mode: "auto", MinScore: 500},
			{Detector: "hygiene", Mode: "approve"}, {Detector: "lingering", Mode: "dry-run"}}
	})
	for _, c := range []struct {
		a    alerting.Alert
		want string
	}{
		{alert("leak", "kid_1", 49), "skipped"},
		{alert("leak", "kid_2", 50), "queued"},
		{alert("spike", "kid_3", 499), "skipped"},
		{alert("spike", "kid_4", 500), "queued"},
		{alert("hygiene", "kid_5", 49), "skipped"},
		{alert("hygiene", "kid_6", 50), "awaiting_approval"},
		{alert("lingering", "kid_7", 49), "dry_run"},
	} {
		if st := e.consider(c.a); st.Status != c.want {
			t.Errorf("%s %s score %g: %+v, want %s", c.a.Detector, c.a.KeyID, c.a.Score, st, c.want)
		}
	}
}

// (e) A key mid-rotation is never revoked automatically: auto waits for an approver. By hand it
// is allowed and audited.
func TestMidRotation(t *testing.T) {
	e := newEnv(t, nil)
	e.lifecycle(t0.Add(-72*time.Hour), "key.created", "kid_old", "c1", "")
	e.lifecycle(t0.Add(-24*time.Hour), "key.rotation_started", "kid_old", "c1", "kid_new")
	for _, k := range []string{"kid_old", "kid_new"} {
		st := e.consider(alert("spike", k, 1000))
		if st.Status != stateAwaiting || !strings.HasPrefix(st.Detail, GuardMidRotation) {
			t.Errorf("%s: %+v, want awaiting_approval by mid_rotation", k, st)
		}
		if a := e.audit(st.ID); !slices.Equal(a, []string{"awaiting_approval/mid_rotation/0"}) {
			t.Errorf("%s audit %v", k, a)
		}
	}
	st, err := e.r.Manual(e.ctx, "kid_old", "leaked in a paste", "cli:alice")
	if err != nil || st.Status != stateApproved {
		t.Fatalf("Manual: %+v %v", st, err)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"requested/mid_rotation/0"}) {
		t.Errorf("manual audit %v", a)
	}
	if again, _ := e.r.Manual(e.ctx, "kid_old", "leaked in a paste", "cli:alice"); again.ID != st.ID {
		t.Errorf("retried Manual made %s, want %s", again.ID, st.ID)
	}
	e.clk.Add(time.Second)
	e.sendDue() // the leader's pass: queued within the cap, sent
	got := e.rv.deliveries()
	if len(got) != 1 || !strings.Contains(got[0].Body, `"mode":"manual"`) {
		t.Errorf("deliveries %+v, want one manual", got)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"requested/mid_rotation/0", "decided//0", "sent//200"}) {
		t.Errorf("manual audit %v", a)
	}
}

// (f) An approval applies once; its guardrails still hold; refused requests are audited.
func TestApproveOnce(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode, c.MaxPerHour = "approve", 1 })
	st := e.consider(alert("leak", "kid_a", 100))
	if st.Status != stateAwaiting {
		t.Fatalf("Consider: %+v", st)
	}
	e.clk.Add(time.Second)
	text, err := e.r.Approve(e.ctx, st.ID, slackUser("U1", "alice"))
	if err != nil || !strings.Contains(text, "approved by alice") {
		t.Fatalf("Approve: %q %v", text, err)
	}
	e.clk.Add(time.Second)
	text, err = e.r.Approve(e.ctx, st.ID, slackUser("U2", "bob"))
	if err != nil || !strings.Contains(text, "already approved by alice") {
		t.Errorf("second Approve: %q %v", text, err)
	}
	e.clk.Add(time.Second)
	e.sendDue() // the leader queues the approved revoke within the cap and sends it
	e.sendDue()
	if got := e.rv.deliveries(); len(got) != 1 || !strings.Contains(got[0].Body, `"mode":"approve"`) {
		t.Errorf("deliveries %+v, want one with mode approve", got)
	}
	want := []string{"awaiting_approval//0", "approved//0", "skipped/already_decided/0", "decided//0", "sent//200"}
	if a := e.audit(st.ID); !slices.Equal(a, want) {
		t.Errorf("audit %v, want %v", a, want)
	}

	// The hourly cap (1) is used up: a second approval is refused for now and keeps waiting.
	st2 := e.consider(alert("leak", "kid_b", 100))
	e.clk.Add(time.Second)
	text, err = e.r.Approve(e.ctx, st2.ID, slackUser("U1", "alice"))
	if err != nil || !strings.Contains(text, "max_per_hour") {
		t.Errorf("Approve over the cap: %q %v", text, err)
	}
	if rec := e.load(st2.ID); rec.State != stateAwaiting {
		t.Errorf("over the cap: %s, want still awaiting_approval", rec.State)
	}
	if a := e.audit(st2.ID); !slices.Equal(a, []string{"awaiting_approval//0", "refused/hourly_cap/0"}) {
		t.Errorf("audit over the cap %v", a)
	}

	// A signed approval of an action keywatch does not have is refused and audited.
	if _, err := e.r.Approve(e.ctx, "rv_nonexistent", slackUser("U1", "alice")); err == nil {
		t.Error("Approve of an unknown action: no error")
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE action_id = 'rv_nonexistent' AND event = 'refused' AND guardrail = 'unknown_action' AND actor = 'slack:U1'`); n != 1 {
		t.Errorf("%d refusals of the unknown action, want 1", n)
	}
	// A signed click by a member not in slack.approvers (notify.Approver.Rejected) is audited.
	e.r.Rejected(e.ctx, "slack", "user_not_allowed", "user U9 (mallory) is not in slack.approvers; action "+st.ID)
	if n := e.count(`SELECT count() FROM action_audit WHERE event = 'rejected' AND actor = 'slack' AND detail LIKE 'user_not_allowed: user U9%'`); n != 1 {
		t.Errorf("%d rejected rows for the click of a non-approver, want 1", n)
	}
}

// An approval is only recorded: the leader queues it within the hourly cap. When the cap filled
// between the click and the leader's pass (another approval, a manual revoke), the approval is
// refused for now and the action waits for another one.
func TestApprovalOverTheCapWaitsAgain(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.DefaultMode, c.MaxPerHour = "approve", 1 })
	e.lifecycle(t0.Add(-time.Hour), "key.created", "kid_b", "c1", "")
	st := e.consider(alert("leak", "kid_a", 100))
	e.clk.Add(time.Second)
	if text, err := e.r.Approve(e.ctx, st.ID, slackUser("U1", "alice")); err != nil || !strings.Contains(text, "approved by alice") {
		t.Fatalf("Approve: %q %v", text, err)
	}
	e.clk.Add(time.Second)
	manual, err := e.r.Manual(e.ctx, "kid_b", "leaked", "cli:bob") // approved after the click, before the leader's pass
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if got := e.rv.deliveries(); len(got) != 1 {
		t.Fatalf("%d deliveries, want 1 (revoke.max_per_hour 1)", len(got))
	}
	// The approval was first: it is sent; the manual request after it is refused by the cap.
	if rec := e.load(st.ID); rec.State != stateSent {
		t.Errorf("the approved revoke is %s (%s), want sent", rec.State, rec.Detail)
	}
	if _, err := e.await(e.r, manual.ID); !errors.Is(err, ErrHourlyCap) {
		t.Errorf("the manual revoke over the cap: %v, want ErrHourlyCap", err)
	}

	// A second approved revoke finds the cap full at the leader's pass: it waits again.
	st2 := e.consider(alert("leak", "kid_c", 100))
	rec := e.load(st2.ID)
	rec.Version++
	rec.State, rec.ApprovedBy, rec.Detail = stateApproved, "carol", "approved by carol"
	if err := e.r.store.save(e.ctx, rec); err != nil { // as a click on another replica, before the cap filled
		t.Fatal(err)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if rec := e.load(st2.ID); rec.State != stateAwaiting || rec.Guardrail != GuardHourlyCap || rec.ApprovedBy != "" {
		t.Errorf("approved over the cap: %s/%s by %q, want awaiting_approval/hourly_cap by nobody", rec.State, rec.Guardrail, rec.ApprovedBy)
	}
	if a := e.audit(st2.ID); !slices.Equal(a, []string{"awaiting_approval//0", "refused/hourly_cap/0"}) {
		t.Errorf("audit %v", a)
	}
	if n := len(e.rv.deliveries()); n != 1 {
		t.Errorf("%d deliveries, want still 1", n)
	}
}

// (g) A 4xx other than 429 is not retried; 429 waits for Retry-After.
func TestClientErrorsAndRetryAfter(t *testing.T) {
	tooMany := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	}
	e := newEnv(t, nil, tooMany, answer(http.StatusUnprocessableEntity))
	st := e.consider(alert("leak", "kid_a", 100))
	e.clk.Add(time.Second)
	e.sendDue()
	e.clk.Add(119 * time.Second)
	e.sendDue()
	if n := len(e.rv.deliveries()); n != 1 {
		t.Fatalf("%d attempts before Retry-After passed, want 1", n)
	}
	e.clk.Add(2 * time.Second)
	e.sendDue()
	for range 3 {
		e.clk.Add(time.Hour)
		e.sendDue()
	}
	if n := len(e.rv.deliveries()); n != 2 {
		t.Errorf("%d attempts, want 2 (no retry after 422)", n)
	}
	rec := e.load(st.ID)
	if rec.State != stateFailed || rec.LastStatus != 422 || !strings.Contains(rec.LastError, "nope") {
		t.Errorf("action %s %d %q, want failed 422 with the body excerpt", rec.State, rec.LastStatus, rec.LastError)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"decided//0", "attempt_failed//429", "failed//422"}) {
		t.Errorf("audit %v", a)
	}
}

// Issue #14 (13): a Retry-After past the end of revoke.retry_for still gets its retry, at the time
// the receiver asked for and not before; a failure then is final. A Retry-After further than one
// more retry_for is cut to it.
func TestRetryAfterBeyondRetryFor(t *testing.T) {
	unavailable := func(seconds string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", seconds)
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	for _, c := range []struct {
		name       string
		script     []func(http.ResponseWriter)
		retryAt    time.Duration // after the first attempt
		state      string
		audit      []string
		deliveries int
	}{
		{"retried at Retry-After, then sent", []func(http.ResponseWriter){unavailable("600")}, 10 * time.Minute,
			stateSent, []string{"decided//0", "attempt_failed//503", "sent//200"}, 2},
		{"the retry past retry_for fails too: failed", []func(http.ResponseWriter){unavailable("600"), unavailable("600")}, 10 * time.Minute,
			stateFailed, []string{"decided//0", "attempt_failed//503", "failed//503"}, 2},
		{"a Retry-After of a day is cut to retry_for past its end", []func(http.ResponseWriter){unavailable("86400")}, 10 * time.Minute,
			stateSent, []string{"decided//0", "attempt_failed//503", "sent//200"}, 2},
		{"Retry-After within retry_for, then one past it", []func(http.ResponseWriter){unavailable("60"), unavailable("300")}, time.Minute,
			stateSent, []string{"decided//0", "attempt_failed//503", "attempt_failed//503", "sent//200"}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(r *config.Revoke) { r.RetryFor = config.Duration(5 * time.Minute) }, c.script...)
			st := e.consider(alert("leak", "kid_a", 100))
			e.clk.Add(time.Second)
			first := e.clk.Now()
			e.sendDue()
			rec := e.load(st.ID)
			if want := first.Add(c.retryAt); rec.State != stateQueued || !rec.NextAttemptAt.Equal(want) {
				t.Fatalf("after a 503: %s, next attempt %s (%s); want queued for %s", rec.State, rec.NextAttemptAt, rec.Detail, want)
			}
			if !strings.Contains(rec.Detail, "Retry-After") {
				t.Errorf("detail %q does not say the receiver asked to wait", rec.Detail)
			}
			e.clk.Add(c.retryAt - time.Millisecond)
			e.sendDue()
			if n := len(e.rv.deliveries()); n != 1 {
				t.Fatalf("%d attempts before the receiver's Retry-After, want 1", n)
			}
			for range 30 {
				e.clk.Add(time.Minute)
				e.sendDue()
			}
			rec = e.load(st.ID)
			if rec.State != c.state || len(e.rv.deliveries()) != c.deliveries {
				t.Errorf("%s after %d deliveries (%s), want %s after %d", rec.State, len(e.rv.deliveries()), rec.Detail, c.state, c.deliveries)
			}
			if a := e.audit(st.ID); !slices.Equal(a, c.audit) {
				t.Errorf("audit %v, want %v", a, c.audit)
			}
		})
	}
}

// (h) dry-run audits once per episode and sends nothing; off does nothing.
func TestDryRunAndOff(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) {
		c.Policies = []config.RevokePolicy{{Detector: "leak*", Mode: "dry-run"}, {Detector: "hygiene", Mode: "off"}}
	})
	a := alert("leak_report", "kid_a", 1000)
	st := e.consider(a)
	e.consider(a)
	if st.Status != stateDryRun {
		t.Errorf("Consider: %+v, want dry_run", st)
	}
	if st := e.consider(alert("hygiene", "kid_b", 1000)); st != nil {
		t.Errorf("off: %+v, want nil", st)
	}
	e.clk.Add(time.Second)
	e.sendDue()
	if n := len(e.rv.deliveries()); n != 0 {
		t.Errorf("receiver called %d times", n)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"dry_run//0"}) {
		t.Errorf("audit %v", a)
	}
	if n := e.count(`SELECT count() FROM action_audit`); n != 1 {
		t.Errorf("%d audit rows, want 1", n)
	}
}

// (i) POST /v1/keys/{id}/revoke and the audit of requests the API refused.
// The API waits for the leader's outcome: 200 sent, 202 not decided within the wait, 409
// protected, 429 over the cap, 502 refused by the receiver.
func TestAPI(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.ProtectedKeys, c.MaxPerHour = []string{"kid_root"}, 3 },
		answer(200), answer(200), answer(http.StatusUnprocessableEntity))
	for _, k := range []string{"kid_a", "kid_b", "kid_root"} {
		e.lifecycle(t0.Add(-time.Hour), "key.created", k, "c1", "")
	}
	post := func(r *Revoker, key, body string) (int, string) {
		t.Helper()
		mux := http.NewServeMux()
		mux.Handle("POST /v1/keys/{id}/revoke", r.APIHandler())
		req := httptest.NewRequest(http.MethodPost, "/v1/keys/"+key+"/revoke", strings.NewReader(body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}

	// No leader yet: a replica answers 202 with the action's id once its wait is over; the leader
	// elected later sends it.
	replica := e.revoker()
	replica.apiWait = 0
	code, body := post(replica, "kid_a", `{"reason": "first"}`)
	var st alerting.ActionStatus
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusAccepted || err != nil || st.ID == "" || st.Status != stateApproved {
		t.Fatalf("POST without a leader: %d %s, want 202 with the approved action's id", code, body)
	}
	e.lead(e.r)
	if got, err := e.await(e.r, st.ID); err != nil || got.Status != stateSent {
		t.Fatalf("the request taken by the leader: %+v %v, want sent", got, err)
	}

	for _, c := range []struct {
		key, body string
		want      int
	}{
		{"kid_a", `{"reason": ""}`, http.StatusBadRequest},
		{"kid_nobody", `{"reason": "x"}`, http.StatusNotFound},
		{"kid_root", `{"reason": "x"}`, http.StatusConflict},
		{"kid_a", `{"reason": "leaked", "actor": "bob"}`, http.StatusOK},
		{"kid_b", `{"reason": "leaked"}`, http.StatusBadGateway}, // the receiver answers 422
		{"kid_b", `{"reason": "leaked, again"}`, http.StatusOK},
		{"kid_a", `{"reason": "leaked again"}`, http.StatusTooManyRequests},
	} {
		if code, body := post(e.r, c.key, c.body); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.key, c.body, code, body, c.want)
		}
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE event = 'refused' AND guardrail = 'unknown_key' AND key_id = 'kid_nobody'`); n != 1 {
		t.Errorf("%d refused rows for the unknown key, want 1", n)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE event = 'requested' AND actor = 'api:bob'`); n != 1 {
		t.Errorf("%d requested rows by api:bob, want 1", n)
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE event = 'refused' AND guardrail = 'hourly_cap' AND actor = 'auto'`); n != 1 {
		t.Errorf("%d refusals by the leader's hourly cap, want 1", n)
	}
	// ReadAudit reads the same rows, oldest first.
	all, err := ReadAudit(e.ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count() FROM action_audit`); uint64(len(all)) != n {
		t.Errorf("ReadAudit read %d rows, the audit holds %d", len(all), n)
	}
	unknown := 0
	for i, a := range all {
		if i > 0 && a.At.Before(all[i-1].At) {
			t.Errorf("ReadAudit row %d at %s before row %d at %s", i, a.At, i-1, all[i-1].At)
		}
		if a.Event == "refused" && a.Guardrail == "unknown_key" && a.KeyID == "kid_nobody" && a.ActionID != "" {
			unknown++
		}
	}
	if unknown != 1 {
		t.Errorf("ReadAudit: %d refusals of the unknown key, want 1", unknown)
	}
	sent, err := ReadSent(e.ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count() FROM actions FINAL WHERE state = 'sent'`); n == 0 || uint64(len(sent)) != n {
		t.Errorf("ReadSent read %d actions, %d were sent", len(sent), n)
	}
	for i, a := range sent {
		if a.Kind != KindRevoke || a.KeyID == "" || a.Queued.IsZero() || a.At.Before(a.Queued) || (i > 0 && a.At.Before(sent[i-1].At)) {
			t.Errorf("ReadSent %d: %+v", i, a)
		}
	}
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// Without revoke.webhook_url, a queued revoke fails at once (audited) instead of retrying.
func TestNoWebhookConfigured(t *testing.T) {
	e := newEnv(t, func(c *config.Revoke) { c.WebhookURL = "" })
	st := e.consider(alert("leak", "kid_a", 100))
	e.clk.Add(time.Second)
	e.sendDue()
	rec := e.load(st.ID)
	if rec.State != stateFailed || !strings.Contains(rec.LastError, "webhook_url") || rec.Attempts != 1 {
		t.Errorf("action %s after %d attempts: %q, want failed at once naming revoke.webhook_url", rec.State, rec.Attempts, rec.LastError)
	}
	if a := e.audit(st.ID); !slices.Equal(a, []string{"decided//0", "failed//0"}) {
		t.Errorf("audit %v", a)
	}
}
