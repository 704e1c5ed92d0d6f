package alerting

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
)

// api calls the silences API as of t0+at.
func (e *env) api(at time.Duration, method, target, body string) (int, map[string]any) {
	e.t.Helper()
	s := NewSilenceAPI(e.conn, e.cfg, nil)
	s.now = func() time.Time { return t0.Add(at) }
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		e.t.Fatalf("%s %s: %d %q: %v", method, target, w.Code, w.Body.String(), err)
	}
	return w.Code, out
}

func TestSilences(t *testing.T) {
	e := newEnv(t)
	e.cfg.Silences = []config.Silence{{
		Matchers: config.Matcher{"client_id": "acme-*", "detector": "lingering"}, EndsAt: t0.Add(24 * time.Hour),
		CreatedBy: "ops@example.com", Comment: "acme migrates next week",
	}}
	acme := newFinding("lingering", "kid_old", "acme-billing", "", finding.Warning)
	initech := newFinding("lingering", "kid_old", "initech-web", "", finding.Warning)
	other := newFinding("lingering", "kid_other", "globex", "", finding.Warning)

	code, created := e.api(0, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_other"}, "duration": "2h", "created_by": "ana", "comment": "known noisy key"}`)
	if code != http.StatusCreated || created["status"] != "active" || created["ends_at"] != t0.Add(2*time.Hour).Format(time.RFC3339) {
		t.Fatalf("POST: %d %v", code, created)
	}
	id := created["id"].(string)
	code, pending := e.api(0, "POST", "/v1/silences", `{"matchers": {"key_id": "kid_old"}, "starts_at": "2026-11-21T12:00:00Z", "ends_at": "2026-11-22T12:00:00Z", "created_by": "ana", "comment": "tomorrow"}`)
	if code != http.StatusCreated || pending["status"] != "pending" {
		t.Fatalf("POST pending: %d %v", code, pending)
	}
	_, list := e.api(time.Minute, "GET", "/v1/silences", "")
	var statuses []string
	for _, s := range list["silences"].([]any) {
		m := s.(map[string]any)
		statuses = append(statuses, m["source"].(string)+":"+m["status"].(string))
	}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []string{"api:active", "api:pending", "config:active"}) {
		t.Fatalf("GET: %v", list)
	}

	ev := e.evaluator()
	e.run("lingering", 0, "", acme, initech, other)
	e.eval(ev, time.Minute)
	if a := e.alert(acme.Fingerprint); a.State != Firing || !strings.HasPrefix(a.Silenced, "config-") {
		t.Fatalf("acme: %+v, want firing, silenced by the file's silence", a)
	}
	if a := e.alert(other.Fingerprint); a.State != Firing || a.Silenced != id {
		t.Fatalf("other: %+v, want firing, silenced by %s", a, id)
	}
	if a := e.alert(initech.Fingerprint); a.Silenced != "" {
		t.Fatalf("initech: %+v, want not silenced", a)
	}
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#keywatch key:kid_old acme-billing=firing(muted) initech-web=firing"}) {
		t.Fatalf("notifications %q", got)
	}
	// Silences mute notifications, not revokes: the Actor is asked about all three.
	if asked := e.actor.take(); len(asked) != 3 {
		t.Fatalf("actor asked %v, want the three firing alerts, silenced or not", asked)
	}

	if code, out := e.api(30*time.Minute, "DELETE", "/v1/silences/"+id+"?expired_by=ana", ""); code != http.StatusOK || out["status"] != "expired" {
		t.Fatalf("DELETE: %d %v", code, out)
	}
	e.run("lingering", 31*time.Minute, "", acme, initech, other)
	e.eval(ev, 32*time.Minute)
	if a := e.alert(other.Fingerprint); a.Silenced != "" {
		t.Fatalf("other after expiry: %+v", a)
	}
	if got := summary(e.notifier.take()); !slices.Equal(got, []string{"#keywatch key:kid_other globex=firing"}) {
		t.Fatalf("notifications after expiry %q", got)
	}
	_, list = e.api(33*time.Minute, "GET", "/v1/silences", "")
	if n := len(list["silences"].([]any)); n != 2 {
		t.Fatalf("GET after expiry: %v, want the pending and the file's", list)
	}
	// A day later the file's silence has ended and the pending one started.
	e.run("lingering", 24*time.Hour, "", acme, initech, other)
	e.eval(ev, 24*time.Hour+time.Minute)
	if a := e.alert(acme.Fingerprint); a.Silenced != pending["id"] {
		t.Fatalf("acme a day later: %+v, want silenced by %s", a, pending["id"])
	}
}

func TestSilenceAPIRejects(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ name, body, field string }{
		{"unknown label", `{"matchers": {"team": "x"}, "duration": "1h", "created_by": "a", "comment": "c"}`, "matchers.team"},
		{"bad glob", `{"matchers": {"key_id": "kid_[a"}, "duration": "1h", "created_by": "a", "comment": "c"}`, "matchers.key_id"},
		{"no matchers", `{"duration": "1h", "created_by": "a", "comment": "c"}`, "matchers"},
		{"no author", `{"matchers": {"key_id": "k"}, "duration": "1h", "comment": "c"}`, "created_by"},
		{"no comment", `{"matchers": {"key_id": "k"}, "duration": "1h", "created_by": "a"}`, "comment"},
		{"no end", `{"matchers": {"key_id": "k"}, "created_by": "a", "comment": "c"}`, "ends_at"},
		{"end and duration", `{"matchers": {"key_id": "k"}, "duration": "1h", "ends_at": "2026-11-21T00:00:00Z", "created_by": "a", "comment": "c"}`, "ends_at"},
		{"bad duration", `{"matchers": {"key_id": "k"}, "duration": "soon", "created_by": "a", "comment": "c"}`, "duration"},
		{"negative duration", `{"matchers": {"key_id": "k"}, "duration": "-1h", "created_by": "a", "comment": "c"}`, "duration"},
		{"bad time", `{"matchers": {"key_id": "k"}, "ends_at": "tomorrow", "created_by": "a", "comment": "c"}`, "ends_at"},
		{"past end", `{"matchers": {"key_id": "k"}, "ends_at": "2026-11-19T00:00:00Z", "created_by": "a", "comment": "c"}`, "ends_at"},
		{"end before start", `{"matchers": {"key_id": "k"}, "starts_at": "2026-11-23T00:00:00Z", "ends_at": "2026-11-22T00:00:00Z", "created_by": "a", "comment": "c"}`, "ends_at"},
		{"unknown field", `{"matchers": {"key_id": "k"}, "duration": "1h", "created_by": "a", "comment": "c", "author": "x"}`, "body"},
		{"not JSON", `matchers=k`, "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.api(0, "POST", "/v1/silences", c.body)
			msg, _ := out["error"].(string)
			if code != http.StatusBadRequest || !strings.HasPrefix(msg, c.field+":") && !strings.Contains(msg, "; "+c.field+":") {
				t.Fatalf("%d %q, want 400 naming %s", code, msg, c.field)
			}
		})
	}
	if code, _ := e.api(0, "DELETE", "/v1/silences/sil-nosuch", ""); code != http.StatusNotFound {
		t.Fatalf("DELETE unknown: %d", code)
	}
	if _, list := e.api(0, "GET", "/v1/silences", ""); len(list["silences"].([]any)) != 0 {
		t.Fatalf("rejected silences were stored: %v", list)
	}
}

func TestInhibition(t *testing.T) {
	e := newEnv(t)
	e.cfg.Inhibit = config.Default().Alerting.Inhibit // leak* critical mutes lingering on the same key
	e.cfg.Inhibit = append(e.cfg.Inhibit, config.InhibitRule{
		Source: config.Matcher{"detector": "spike"}, Target: config.Matcher{"detector": "spike"}, Equal: []string{"key_id"},
	})
	leak := newFinding("leak", "kid_a", "acme-billing", "", finding.Critical)
	lingering := newFinding("lingering", "kid_a", "initech-web", "rot-1", finding.Warning)
	lingeringB := newFinding("lingering", "kid_b", "initech-web", "rot-2", finding.Warning) // other key: not muted
	keyWide := newFinding("hygiene", "kid_c", "", "", finding.Warning)
	perClient := newFinding("spike", "kid_c", "acme-billing", "", finding.Warning)
	perClientCritical := newFinding("leak", "kid_c", "globex", "", finding.Critical) // more severe: not muted
	self := newFinding("spike", "kid_d", "", "", finding.Warning)                    // matches its own rule's source and target

	ev := e.evaluator()
	e.run("leak", 0, "", leak, perClientCritical)
	e.run("lingering", 0, "", lingering, lingeringB)
	e.run("hygiene", 0, "", keyWide)
	e.run("spike", 0, "", perClient, self)
	e.eval(ev, time.Minute)
	want := map[string]string{
		leak.Fingerprint: "", lingering.Fingerprint: leak.Fingerprint, lingeringB.Fingerprint: "",
		keyWide.Fingerprint: "", perClient.Fingerprint: keyWide.Fingerprint, perClientCritical.Fingerprint: "",
		self.Fingerprint: "",
	}
	for fp, src := range want {
		if a := e.alert(fp); a.State != Firing || a.Inhibited != src {
			t.Errorf("%s %s/%s: state %s, inhibited by %q, want %q", a.Detector, a.KeyID, a.ClientID, a.State, a.Inhibited, src)
		}
	}
	got := summary(e.notifier.take())
	slices.Sort(got)
	wantN := []string{
		"#keywatch key:kid_a acme-billing=firing",
		"#keywatch key:kid_c globex=firing acme-billing=firing(muted) =firing",
		"#keywatch key:kid_d =firing",
		"#keywatch rotation:rot-2 initech-web=firing",
	}
	if !slices.Equal(got, wantN) {
		t.Fatalf("notifications\n%q\nwant\n%q", got, wantN)
	}
	// The source resolves: its targets are told.
	e.cfg.ResolveAfter = map[string]config.Duration{"default": config.Duration(time.Hour)}
	ev = e.evaluator()
	e.run("leak", 2*time.Hour, "", perClientCritical)
	e.run("lingering", 2*time.Hour, "", lingering, lingeringB)
	e.eval(ev, 2*time.Hour+time.Minute)
	if a := e.alert(lingering.Fingerprint); a.Inhibited != "" {
		t.Fatalf("lingering after the leak resolved: %+v", a)
	}
	got = summary(e.notifier.take())
	slices.Sort(got)
	wantN = []string{"#keywatch key:kid_a acme-billing=resolved resolved", "#keywatch rotation:rot-1 initech-web=firing"}
	if !slices.Equal(got, wantN) {
		t.Fatalf("notifications\n%q\nwant\n%q", got, wantN)
	}
}
