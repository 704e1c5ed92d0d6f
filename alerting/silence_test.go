package alerting

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// silenceByID returns the silence id of GET /v1/silences as of t0+at, nil when it is not listed.
func (e *env) silenceByID(at time.Duration, id string) map[string]any {
	e.t.Helper()
	code, list := e.api(at, "GET", "/v1/silences", "")
	if code != http.StatusOK {
		e.t.Fatalf("GET: %d %v", code, list)
	}
	for _, s := range list["silences"].([]any) {
		if m := s.(map[string]any); m["id"] == id {
			return m
		}
	}
	return nil
}

// TestSilenceTimesAsAnswered: a silence's times are stored to the millisecond, so GET answers
// what POST answered, and the silence ends at that instant, not at the second before or after.
func TestSilenceTimesAsAnswered(t *testing.T) {
	e := newEnv(t)
	at := 789 * time.Millisecond // the request's time: created_at
	code, created := e.api(at, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_old"}, "starts_at": "2026-11-20T11:59:59.456Z",
		"ends_at": "2026-11-20T13:00:00.123Z", "created_by": "ana", "comment": "migration"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, created)
	}
	want := map[string]string{"starts_at": "2026-11-20T11:59:59.456Z", "ends_at": "2026-11-20T13:00:00.123Z", "created_at": "2026-11-20T12:00:00.789Z"}
	for field, v := range want {
		if created[field] != v {
			t.Errorf("POST answered %s %v, want %s", field, created[field], v)
		}
	}
	id := created["id"].(string)
	got := e.silenceByID(time.Minute, id)
	if got == nil {
		t.Fatalf("GET does not list %s", id)
	}
	for field, v := range want {
		if got[field] != v {
			t.Errorf("GET answered %s %v, want %s (as POST answered)", field, got[field], v)
		}
	}

	// In force until 13:00:00.123 exactly.
	f := newFinding("lingering", "kid_old", "acme-billing", "", finding.Warning)
	ev := e.evaluator()
	e.run("lingering", 0, "", f)
	e.eval(ev, time.Hour+122*time.Millisecond)
	if a := e.alert(f.Fingerprint); a.Silenced != id {
		t.Fatalf("at 13:00:00.122: %+v, want silenced by %s", a, id)
	}
	e.eval(ev, time.Hour+123*time.Millisecond)
	if a := e.alert(f.Fingerprint); a.Silenced != "" {
		t.Fatalf("at 13:00:00.123: %+v, want the silence ended", a)
	}
	if e.silenceByID(time.Hour+123*time.Millisecond, id) != nil {
		t.Fatalf("GET at 13:00:00.123 still lists %s", id)
	}

	// Expiring it stores the DELETE's time, to the millisecond.
	code, created = e.api(at, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_old"}, "duration": "2h", "created_by": "ana", "comment": "again"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, created)
	}
	id = created["id"].(string)
	if code, out := e.api(10*time.Minute+5*time.Millisecond, "DELETE", "/v1/silences/"+id, ""); code != http.StatusOK || out["ends_at"] != "2026-11-20T12:10:00.005Z" {
		t.Fatalf("DELETE: %d %v", code, out)
	}
	if s := e.silenceByID(10*time.Minute+4*time.Millisecond, id); s == nil || s["ends_at"] != "2026-11-20T12:10:00.005Z" {
		t.Fatalf("GET just before the expiry: %v", s)
	}
}

// TestSilencesAreBounded: a silence ends at most alerting.silence_max_duration after it starts,
// and selects something: a silence of every key for ever is refused.
func TestSilencesAreBounded(t *testing.T) {
	e := newEnv(t)
	refused := []struct{ name, body, field, says string }{
		{"year 9999", `{"matchers": {"key_id": "kid_old"}, "ends_at": "9999-12-31T00:00:00Z", "created_by": "a", "comment": "c"}`, "ends_at", "alerting.silence_max_duration (720h0m0s)"},
		{"a day too long", `{"matchers": {"key_id": "kid_old"}, "starts_at": "2026-11-21T00:00:00Z", "ends_at": "2026-12-22T00:00:00Z", "created_by": "a", "comment": "c"}`, "ends_at", "alerting.silence_max_duration (720h0m0s)"},
		{"a year", `{"matchers": {"key_id": "kid_old"}, "duration": "8760h", "created_by": "a", "comment": "c"}`, "duration", "alerting.silence_max_duration (720h0m0s)"},
		{"starts in 9999", `{"matchers": {"key_id": "kid_old"}, "starts_at": "9999-12-30T00:00:00Z", "ends_at": "9999-12-31T00:00:00Z", "created_by": "a", "comment": "c"}`, "starts_at", "before"},
		{"every key", `{"matchers": {"key_id": "*"}, "duration": "1h", "created_by": "a", "comment": "c"}`, "matchers", "matches every alert"},
		{"only wildcards", `{"matchers": {"key_id": "*", "severity": "**"}, "duration": "1h", "created_by": "a", "comment": "c"}`, "matchers", "matches every alert"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.api(0, "POST", "/v1/silences", c.body)
			msg, _ := out["error"].(string)
			if code != http.StatusBadRequest || !strings.HasPrefix(msg, c.field+":") && !strings.Contains(msg, "; "+c.field+":") || !strings.Contains(msg, c.says) {
				t.Fatalf("%d %q, want 400 naming %s and saying %q", code, msg, c.field, c.says)
			}
		})
	}
	if _, list := e.api(0, "GET", "/v1/silences", ""); len(list["silences"].([]any)) != 0 {
		t.Fatalf("refused silences were stored: %v", list)
	}
	accepted := []string{
		`{"matchers": {"key_id": "kid_old"}, "duration": "720h", "created_by": "a", "comment": "c"}`,
		`{"matchers": {"key_id": "kid_old"}, "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-31T00:00:00Z", "created_by": "a", "comment": "c"}`,
		`{"matchers": {"key_id": "*", "detector": "lingering"}, "duration": "1h", "created_by": "a", "comment": "c"}`,
	}
	for _, body := range accepted {
		if code, out := e.api(0, "POST", "/v1/silences", body); code != http.StatusCreated {
			t.Errorf("%s: %d %v, want 201", body, code, out)
		}
	}
	// A shorter limit applies to the next silence.
	e.cfg.SilenceMaxDuration = config.Duration(time.Hour)
	code, out := e.api(0, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_old"}, "duration": "2h", "created_by": "a", "comment": "c"}`)
	if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.Contains(msg, "alerting.silence_max_duration (1h0m0s)") {
		t.Fatalf("2h under a 1h limit: %d %v", code, out)
	}
}

// TestSilencedAlertsAreStillActedOn: a silence mutes notifications; whether a firing alert is
// revoked is the revoke policy's and guardrails' decision (revoke.protected_keys keeps a key from
// being revoked), so the Actor is asked about silenced alerts as about any other.
func TestSilencedAlertsAreStillActedOn(t *testing.T) {
	e := newEnv(t)
	code, created := e.api(0, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_leaked"}, "duration": "2h", "created_by": "ana", "comment": "known"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %v", code, created)
	}
	leak := newFinding("leak", "kid_leaked", "", "", finding.Critical)
	ev := e.evaluator()
	e.run("leak", 0, "", leak)
	e.eval(ev, time.Minute)
	if a := e.alert(leak.Fingerprint); a.State != Firing || a.Silenced != created["id"] {
		t.Fatalf("alert %+v, want firing and silenced by %s", a, created["id"])
	}
	if got := e.notifier.take(); len(got) != 0 {
		t.Fatalf("notified %v, want nothing: the only alert is silenced", got)
	}
	if asked := e.actor.take(); len(asked) != 1 || !strings.HasPrefix(asked[0], leak.Fingerprint) {
		t.Fatalf("actor asked %v, want the silenced alert", asked)
	}
	// Revoked under an auto policy: the silence does not hide that.
	e.actor.mode = "auto"
	e.eval(ev, 2*time.Minute)
	if got := summary(e.notifier.take()); len(got) != 1 || !strings.Contains(got[0], "firing(muted)") {
		t.Fatalf("notified %q, want the silenced alert told once its key is revoked", got)
	}
}
