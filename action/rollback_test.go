package action

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// rollbackCfg is the rollback section the tests start from: approve by default, one day.
func rollbackCfg() config.Rollback {
	c := config.Default().Rollback
	c.DefaultMode, c.ExtendBy, c.LeakLookback = "approve", config.Duration(24*time.Hour), config.Duration(24*time.Hour)
	return c
}

// rotated stores a rotation old → new of client whose grace deadline is grace, with the old key
// revoked at t0 - 10m.
func (e *env) rotated(old, newKey, client string, grace time.Time) {
	e.t.Helper()
	e.lifecycle(t0.Add(-48*time.Hour), "key.created", old, client, "")
	if err := e.conn.Exec(e.ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'key.rotation_started', ?, ?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), '', 0, 0)`,
		t0.Add(-24*time.Hour).UnixMilli(), old, client, newKey, grace.UnixMilli()); err != nil {
		e.t.Fatal(err)
	}
	e.lifecycle(t0.Add(-10*time.Minute), "key.revoked", old, client, "")
}

// spikeAlert is a firing spike alert of client after step of old's rotation to new, labelled as the
// spike detector labels it.
func spikeAlert(old, newKey, client string, step rotation.StepKind) alerting.Alert {
	ev, _ := json.Marshal(map[string]any{
		"rotation_id": rotation.ID(old, newKey), "old_key_id": old, "new_key_id": newKey, "step": step, "step_at": t0.Add(-10 * time.Minute), "client_id": client,
	})
	return alerting.Alert{
		Fingerprint: "fp_spike_" + old + "_" + client, Detector: "spike", KeyID: old, ClientID: client, RotationID: rotation.ID(old, newKey),
		Severity: finding.Critical, Score: 12, Summary: client + ": 80% of requests failed", Evidence: ev,
		Labels: map[string]string{finding.LabelStep: string(step)},
		State:  alerting.Firing, ActiveSince: t0.Add(-5 * time.Minute), FiredAt: t0.Add(-4 * time.Minute),
	}
}

// stored writes a as the alerting evaluator stores it (state included).
func (e *env) stored(a alerting.Alert) alerting.Alert {
	e.t.Helper()
	if err := e.conn.Exec(e.ctx, `INSERT INTO alerts (fingerprint, detector, key_id, client_id, rotation_id, severity, score, summary, evidence, state, active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, updated_at, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 0, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), '', '', '',
        fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)`,
		a.Fingerprint, a.Detector, a.KeyID, a.ClientID, a.RotationID, a.Severity.String(), a.Score, a.Summary, string(a.State),
		a.ActiveSince.UnixMilli(), a.FiredAt.UnixMilli(), a.FiredAt.UnixMilli(), e.clk.Now().UnixMilli(), uint64(e.clk.Now().UnixNano())); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// leak marks key as leaked: an open leak_report alert, or a leak finding at t0 - ago.
func (e *env) leak(key string, alert bool, ago time.Duration) {
	e.t.Helper()
	q := `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'r1', 'leak', ?, 'critical', 120, ?, 'acme', '', 'used from 40 new networks', '{}')`
	if alert {
		q = `INSERT INTO alerts (fingerprint, detector, key_id, client_id, rotation_id, severity, score, summary, evidence, state, active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, updated_at, version)
VALUES (?, 'leak_report', ?, 'acme', '', 'critical', 100, 'reported public on GitHub', '{}', 'firing', fromUnixTimestamp64Milli(toInt64(?), 'UTC'),
        fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 0, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), '', '', '', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 1)`
		at := t0.Add(-ago).UnixMilli()
		if err := e.conn.Exec(e.ctx, q, "fp_leak_"+key, key, at, at, at, at); err != nil {
			e.t.Fatal(err)
		}
		return
	}
	if err := e.conn.Exec(e.ctx, q, t0.Add(-ago).UnixMilli(), "fp_leak_"+key, key); err != nil {
		e.t.Fatal(err)
	}
}

func body(t *testing.T, d delivery) map[string]any {
	t.Helper()
	var b map[string]any
	if err := json.Unmarshal([]byte(d.Body), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A spike after a revoke step is a rollback under the rollback policy: approve waits for a click,
// auto runs for critical clients only, a leaked key is refused, other alerts go to revoke policy.
func TestRollbackPolicy(t *testing.T) {
	grace := t0.Add(-time.Hour)
	for _, c := range []struct {
		name      string
		mutate    func(*config.Rollback)
		step      rotation.StepKind
		unlabeled bool   // the alert was stored before alerts had labels: its step is in its evidence only
		leak      string // "", "alert", "finding", "old_finding"
		want      string // status; "" for no action
		kind      string
		guard     string
		audit     []string
		delivers  int
	}{
		{name: "off", mutate: func(c *config.Rollback) { c.DefaultMode = "off" }, step: rotation.StepRevoked},
		{name: "started step", step: rotation.StepStarted},
		{name: "approve", step: rotation.StepRevoked, want: stateAwaiting, kind: KindExtendGrace, audit: []string{"awaiting_approval//0"}},
		{name: "approve, stored before labels", step: rotation.StepRevoked, unlabeled: true, want: stateAwaiting, kind: KindExtendGrace,
			audit: []string{"awaiting_approval//0"}},
		{name: "started step, stored before labels", step: rotation.StepStarted, unlabeled: true},
		{name: "auto critical", step: rotation.StepRetired, want: stateSent, kind: KindExtendGrace, delivers: 1,
			mutate: func(c *config.Rollback) { c.DefaultMode, c.CriticalClients = "auto", []string{"acme-*"} },
			audit:  []string{"decided//0", "sent//200"}},
		{name: "auto not critical", step: rotation.StepRevoked, want: stateAwaiting, kind: KindExtendGrace, guard: GuardNotCritical,
			mutate: func(c *config.Rollback) { c.DefaultMode, c.CriticalClients = "auto", []string{"globex"} },
			audit:  []string{"awaiting_approval/not_critical/0"}},
		{name: "policy reactivate", step: rotation.StepRevoked, want: stateSent, kind: KindReactivate, delivers: 1,
			mutate: func(c *config.Rollback) {
				c.CriticalClients = []string{"acme-*"}
				c.Policies = []config.RollbackPolicy{{Rotation: "kid_other>*", Mode: "off"}, {Rotation: "kid_old>*", Clients: "acme-*", Mode: "auto", Action: "reactivate"}}
			},
			audit: []string{"decided//0", "sent//200"}},
		{name: "open leak alert", step: rotation.StepRevoked, leak: "alert", want: "skipped", kind: KindExtendGrace, guard: GuardLeaked,
			mutate: func(c *config.Rollback) { c.DefaultMode, c.CriticalClients = "auto", []string{"*"} },
			audit:  []string{"refused/leaked/0"}},
		{name: "recent leak finding", step: rotation.StepRevoked, leak: "finding", want: "skipped", kind: KindExtendGrace, guard: GuardLeaked,
			audit: []string{"refused/leaked/0"}},
		{name: "leak finding older than leak_lookback", step: rotation.StepRevoked, leak: "old_finding", want: stateAwaiting, kind: KindExtendGrace,
			audit: []string{"awaiting_approval//0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(r *config.Revoke) { r.DefaultMode = "off" })
			e.r.rollback = rollbackCfg()
			if c.mutate != nil {
				c.mutate(&e.r.rollback)
			}
			e.rotated("kid_old", "kid_new", "acme-billing", grace)
			switch c.leak {
			case "alert":
				e.leak("kid_old", true, time.Hour)
			case "finding":
				e.leak("kid_old", false, time.Hour)
			case "old_finding":
				e.leak("kid_old", false, 48*time.Hour)
			}
			a := spikeAlert("kid_old", "kid_new", "acme-billing", c.step)
			if c.unlabeled {
				a.Labels = nil
			}
			st := e.consider(a)
			e.clk.Add(time.Second)
			e.sendDue()
			if c.want == "" {
				if st != nil {
					t.Fatalf("Consider: %+v, want no action", st)
				}
				return
			}
			if st == nil {
				t.Fatal("Consider: no action")
			}
			if st.ID != ActionID(c.kind, "kid_old", a.ID()) || st.Kind != c.kind {
				t.Errorf("Consider: %+v, want kind %s with the deterministic id", st, c.kind)
			}
			rec := e.load(st.ID)
			if got := status(rec).Status; got != c.want || rec.Guardrail != c.guard {
				t.Errorf("status %s guardrail %q (%s), want %s %q", got, rec.Guardrail, rec.Detail, c.want, c.guard)
			}
			if c.guard == GuardLeaked && !strings.Contains(rec.Detail, "kid_old has a") {
				t.Errorf("refusal detail %q does not say why", rec.Detail)
			}
			if got := e.audit(st.ID); !slices.Equal(got, c.audit) {
				t.Errorf("audit %v, want %v", got, c.audit)
			}
			got := e.rv.deliveries()
			if len(got) != c.delivers {
				t.Fatalf("%d deliveries, want %d", len(got), c.delivers)
			}
			if c.delivers == 0 {
				return
			}
			b := body(t, got[0])
			if got[0].ID != st.ID || b["action"] != c.kind || b["key_id"] != "kid_old" || b["client_id"] != "acme-billing" ||
				b["rotation_id"] != "kid_old>kid_new" || b["mode"] != "auto" || b["alert_id"] != a.ID() {
				t.Errorf("delivery %s %s", got[0].ID, got[0].Body)
			}
			// The deadline has passed: the grace runs extend_by from the decision.
			if want := t0.Add(24 * time.Hour).Format(time.RFC3339); c.kind == KindExtendGrace && b["grace_until"] != want {
				t.Errorf("grace_until %v, want %s", b["grace_until"], want)
			}
			if _, has := b["grace_until"]; c.kind == KindReactivate && has {
				t.Errorf("reactivate body carries grace_until: %s", got[0].Body)
			}
		})
	}
}

// A click approves a rollback once; retries keep the webhook-id and body; a key found leaked
// between the offer and the click is refused and audited.
func TestRollbackApprove(t *testing.T) {
	e := newEnv(t, nil, answer(500))
	e.r.rollback = rollbackCfg()
	grace := t0.Add(2 * time.Hour) // still in the future: extended from the deadline
	e.rotated("kid_old", "kid_new", "acme-billing", grace)
	st := e.consider(e.stored(spikeAlert("kid_old", "kid_new", "acme-billing", rotation.StepRevoked)))
	if st.Status != stateAwaiting || st.Kind != KindExtendGrace {
		t.Fatalf("Consider: %+v", st)
	}
	e.clk.Add(time.Second)
	text, err := e.r.Approve(e.ctx, st.ID, slackUser("U1", "alice"))
	if err != nil || !strings.Contains(text, "approved by alice") {
		t.Fatalf("Approve: %q %v", text, err)
	}
	e.clk.Add(time.Second)
	text, _ = e.r.Approve(e.ctx, st.ID, slackUser("U2", "bob"))
	if !strings.Contains(text, "already approved by alice") {
		t.Errorf("second Approve: %q", text)
	}
	for range 3 {
		e.clk.Add(time.Second)
		e.sendDue()
		e.clk.Add(time.Minute)
	}
	got := e.rv.deliveries()
	if len(got) != 2 || got[0].ID != st.ID || got[1].ID != st.ID || got[0].Body != got[1].Body {
		t.Fatalf("deliveries %+v, want two with id %s and the same body", got, st.ID)
	}
	b := body(t, got[0])
	if b["mode"] != "approve" || b["action"] != KindExtendGrace || b["grace_until"] != grace.Add(24*time.Hour).Format(time.RFC3339) {
		t.Errorf("body %s", got[0].Body)
	}
	want := []string{"awaiting_approval//0", "approved//0", "skipped/already_decided/0", "attempt_failed//500", "sent//200"}
	if a := e.audit(st.ID); !slices.Equal(a, want) {
		t.Errorf("audit %v, want %v", a, want)
	}

	// Another client's spike on a key that leaks before the click.
	e.rotated("kid_two", "kid_three", "globex", grace)
	st2 := e.consider(e.stored(spikeAlert("kid_two", "kid_three", "globex", rotation.StepRevoked)))
	e.leak("kid_two", false, time.Minute)
	e.clk.Add(time.Second)
	text, err = e.r.Approve(e.ctx, st2.ID, slackUser("U1", "alice"))
	if err != nil || !strings.Contains(text, "refused") || !strings.Contains(text, "leak") {
		t.Errorf("Approve of a leaked key: %q %v", text, err)
	}
	if rec := e.load(st2.ID); rec.State != stateRefused || rec.Guardrail != GuardLeaked {
		t.Errorf("leaked key's rollback %s/%s", rec.State, rec.Guardrail)
	}
	if a := e.audit(st2.ID); !slices.Equal(a, []string{"awaiting_approval//0", "refused/leaked/0"}) {
		t.Errorf("audit %v", a)
	}

	// A click after the alert resolved (on a message not updated yet) is refused.
	e.rotated("kid_four", "kid_five", "initech", grace)
	over := e.stored(spikeAlert("kid_four", "kid_five", "initech", rotation.StepRevoked))
	st3 := e.consider(over)
	over.State = alerting.Resolved
	e.clk.Add(time.Second)
	e.stored(over)
	text, err = e.r.Approve(e.ctx, st3.ID, slackUser("U1", "alice"))
	if err != nil || !strings.Contains(text, "no longer fires") {
		t.Errorf("Approve after the alert resolved: %q %v", text, err)
	}
	if rec := e.load(st3.ID); rec.State != stateRefused || rec.Guardrail != GuardAlertOver {
		t.Errorf("rollback of a resolved alert %s/%s", rec.State, rec.Guardrail)
	}
	e.sendDue()
	if n := len(e.rv.deliveries()); n != 2 {
		t.Errorf("%d deliveries after the refusals, want still 2", n)
	}
}

// keywatch rollback and POST /v1/keys/{id}/rollback: manual, audited, refused for a leaked key.
func TestManualRollbackAPI(t *testing.T) {
	e := newEnv(t, nil)
	e.r.rollback = rollbackCfg()
	e.rotated("kid_old", "kid_new", "acme-billing", t0.Add(-time.Hour))
	e.rotated("kid_leaky", "kid_next", "acme-billing", t0.Add(-time.Hour))
	e.leak("kid_leaky", true, time.Hour)

	st, err := e.r.ManualRollback(e.ctx, "kid_old", KindExtendGrace, 48*time.Hour, "", "cli:ops")
	if err != nil || st.Status != stateQueued {
		t.Fatalf("ManualRollback: %+v %v", st, err)
	}
	if _, err := e.r.ManualRollback(e.ctx, "kid_leaky", KindExtendGrace, 0, "", "cli:ops"); !errors.Is(err, ErrLeaked) {
		t.Errorf("rollback of a leaked key: %v, want ErrLeaked", err)
	}
	e.sendDue()
	got := e.rv.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	if b := body(t, got[0]); b["mode"] != "manual" || b["grace_until"] != t0.Add(48*time.Hour).Format(time.RFC3339) || b["reason"] != "manual rollback by cli:ops" {
		t.Errorf("body %s", got[0].Body)
	}

	e.lead(e.r) // the API waits for the leader to send
	mux := http.NewServeMux()
	mux.Handle("POST /v1/keys/{id}/rollback", e.r.RollbackAPIHandler())
	for _, c := range []struct {
		key, body string
		want      int
	}{
		{"kid_old", `{"action": "delete"}`, http.StatusBadRequest},
		{"kid_old", `{"action": "reactivate", "extend": "24h"}`, http.StatusBadRequest},
		{"kid_old", `{"extend": "soon"}`, http.StatusBadRequest},
		{"kid_nobody", `{}`, http.StatusNotFound},
		{"kid_leaky", `{"action": "reactivate", "reason": "client down"}`, http.StatusConflict},
		{"kid_old", `{"action": "reactivate", "reason": "client down", "actor": "bob"}`, http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/keys/"+c.key+"/rollback", strings.NewReader(c.body))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.key, c.body, w.Code, w.Body.String(), c.want)
		}
	}
	for q, want := range map[string]uint64{
		`SELECT count() FROM action_audit WHERE event = 'refused' AND guardrail = 'leaked' AND key_id = 'kid_leaky'`:                      2,
		`SELECT count() FROM action_audit WHERE event = 'decided' AND actor = 'api:bob' AND kind = 'reactivate'`:                          1,
		`SELECT count() FROM action_audit WHERE event = 'refused' AND guardrail = 'unknown_key' AND kind = 'extend_grace'`:                1,
		`SELECT count() FROM actions FINAL WHERE mode = 'manual' AND kind IN ('extend_grace', 'reactivate') AND state = 'refused'`:        2,
		`SELECT count() FROM action_audit WHERE event = 'decided' AND actor = 'cli:ops' AND kind = 'extend_grace' AND key_id = 'kid_old'`: 1,
	} {
		if n := e.count(q); n != want {
			t.Errorf("%s: %d, want %d", q, n, want)
		}
	}
}

// Issue #14 (14): a rollback of a key that is the old key of no rotation (a key merely revoked,
// or the new key of a rotation) is refused with not_in_rotation, audited, and sent nowhere: by
// hand, through the API, or from a spike alert.
func TestRollbackOfKeyInNoRotationRefused(t *testing.T) {
	e := newEnv(t, func(r *config.Revoke) { r.DefaultMode = "off" })
	e.r.rollback = rollbackCfg()
	e.r.rollback.DefaultMode, e.r.rollback.CriticalClients = "auto", []string{"*"}
	e.lifecycle(t0.Add(-48*time.Hour), "key.created", "kid_plain", "acme", "")
	e.lifecycle(t0.Add(-time.Hour), "key.revoked", "kid_plain", "acme", "")
	e.rotated("kid_old", "kid_new", "acme", t0.Add(-time.Hour))
	for _, c := range []struct{ key, says string }{
		{"kid_plain", "kid_plain is in no rotation"},
		{"kid_new", "kid_new is the new key of rotation kid_old>kid_new"},
	} {
		st, err := e.r.ManualRollback(e.ctx, c.key, KindReactivate, 0, "client down", "cli:ops")
		if !errors.Is(err, ErrNotInRotation) || st == nil || st.Status != stateRefused || !strings.Contains(err.Error(), c.says) {
			t.Errorf("rollback of %s: %+v %v, want refused with ErrNotInRotation saying %q", c.key, st, err, c.says)
		}
	}
	e.lead(e.r)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/keys/{id}/rollback", e.r.RollbackAPIHandler())
	req := httptest.NewRequest(http.MethodPost, "/v1/keys/kid_plain/rollback", strings.NewReader(`{"action": "extend_grace", "reason": "x"}`))
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), GuardNotInRotation) {
		t.Errorf("POST rollback of kid_plain: %d %s, want 409 naming %s", w.Code, w.Body, GuardNotInRotation)
	}
	// A spike alert naming kid_plain with a revoke step, as if from a rotation keywatch lost.
	a := spikeAlert("kid_plain", "kid_other", "acme", rotation.StepRevoked)
	if st := e.consider(a); st == nil || st.Status != "skipped" || !strings.HasPrefix(st.Detail, GuardNotInRotation) {
		t.Errorf("Consider of a spike on kid_plain: %+v, want skipped by %s", st, GuardNotInRotation)
	}
	// The old key of a rotation is rolled back, as before.
	st, err := e.r.ManualRollback(e.ctx, "kid_old", KindReactivate, 0, "client down", "cli:ops")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := e.await(e.r, st.ID); err != nil || st.Status != stateSent {
		t.Errorf("rollback of kid_old: %+v %v, want sent", st, err)
	}
	for _, d := range e.rv.deliveries() {
		if k := body(t, d)["key_id"]; k != "kid_old" {
			t.Errorf("a rollback of %s was sent: %s", k, d.Body)
		}
	}
	if n := e.count(`SELECT count() FROM action_audit WHERE event = 'refused' AND guardrail = 'not_in_rotation'`); n != 4 {
		t.Errorf("%d refusals audited with not_in_rotation, want 4", n)
	}
}
