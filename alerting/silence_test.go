package alerting

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
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

// TestSilencesInGo: List, Create and Expire, what the web console calls: List counts the open
// alerts each silence matches and shows recently expired ones, newest first; Create refuses bad
// input naming every field; Expire refuses unknown ids and the file's silences.
func TestSilencesInGo(t *testing.T) {
	e := newEnv(t)
	e.cfg.Silences = []config.Silence{{
		Matchers: config.Matcher{"detector": "hygiene"}, StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(24 * time.Hour),
		CreatedBy: "ops@example.com", Comment: "the file's",
	}}
	ctx := context.Background()
	f := newFinding("lingering", "kid_old", "acme-billing", "", finding.Warning)
	e.run("lingering", 0, "", f)
	e.eval(e.evaluator(), time.Minute)

	matching, err := e.silences(2*time.Minute).Create(ctx, NewSilence{
		Matchers: config.Matcher{"key_id": "kid_old", "client_id": "acme-*"}, Duration: 2 * time.Hour, CreatedBy: " ana ", Comment: "migrating",
	})
	if err != nil {
		t.Fatal(err)
	}
	if matching.Status != "active" || matching.Source != "api" || matching.CreatedBy != "ana" || !matching.StartsAt.Equal(t0.Add(2*time.Minute)) ||
		!matching.EndsAt.Equal(t0.Add(2*time.Hour+2*time.Minute)) || !strings.HasPrefix(matching.ID, "sil-") {
		t.Fatalf("Create: %+v", matching)
	}
	nothing, err := e.silences(3*time.Minute).Create(ctx, NewSilence{
		Matchers: config.Matcher{"key_id": "kid_none"}, StartsAt: t0.Add(time.Hour), EndsAt: t0.Add(3 * time.Hour), CreatedBy: "bo", Comment: "later",
	})
	if err != nil || nothing.Status != "pending" {
		t.Fatalf("Create pending: %+v %v", nothing, err)
	}
	gone, err := e.silences(4*time.Minute).Create(ctx, NewSilence{Matchers: config.Matcher{"key_id": "kid_old"}, Duration: time.Hour, CreatedBy: "cy", Comment: "short"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.silences(5*time.Minute).Expire(ctx, gone.ID, "cy"); err != nil {
		t.Fatalf("Expire: %v", err)
	}

	list, err := e.silences(10 * time.Minute).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, fmt.Sprintf("%s %s %s %d", s.ID, s.Source, s.Status, s.Matching))
	}
	cfgID := list[len(list)-1].ID
	want := []string{ // newest (latest starts_at) first
		nothing.ID + " api pending 0",
		gone.ID + " api expired 1", // started 12:04, expired 12:05
		matching.ID + " api active 1",
		cfgID + " config active 0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List:\n%q\nwant\n%q", got, want)
	}
	// /v1/silences lists the same, without the expired one and without Matching.
	if s := e.silenceByID(10*time.Minute, gone.ID); s != nil {
		t.Fatalf("GET lists the expired silence: %v", s)
	}
	if s := e.silenceByID(10*time.Minute, matching.ID); s == nil || s["status"] != "active" || s["matching"] != nil || len(s) != 9 {
		t.Fatalf("GET: %v, want the 9 fields of before", s)
	}
	// A day after it ended, the expired silence is no longer listed.
	list, err = e.silences(24*time.Hour + 6*time.Minute).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == gone.ID {
			t.Fatalf("List a day after the expiry still shows %+v", s)
		}
	}

	// Create refuses, naming every field at fault.
	refused := []struct {
		name   string
		in     NewSilence
		fields []string
	}{
		{"empty", NewSilence{}, []string{"matchers", "ends_at", "created_by", "comment"}},
		{"everything", NewSilence{Matchers: config.Matcher{"key_id": "*"}, Duration: time.Hour, CreatedBy: "a", Comment: "c"}, []string{"matchers"}},
		{"unknown label", NewSilence{Matchers: config.Matcher{"team": "x"}, Duration: time.Hour, Comment: "c"}, []string{"matchers.team", "created_by"}},
		{"both ends", NewSilence{Matchers: config.Matcher{"key_id": "k"}, EndsAt: t0.Add(time.Hour), Duration: time.Hour, CreatedBy: "a", Comment: "c"}, []string{"ends_at"}},
		{"negative", NewSilence{Matchers: config.Matcher{"key_id": "k"}, Duration: -time.Hour, CreatedBy: "a", Comment: "c"}, []string{"duration"}},
		{"too long", NewSilence{Matchers: config.Matcher{"key_id": "k"}, Duration: 8760 * time.Hour, CreatedBy: "a", Comment: "c"}, []string{"duration"}},
		{"past", NewSilence{Matchers: config.Matcher{"key_id": "k"}, EndsAt: t0.Add(-time.Hour), CreatedBy: "a", Comment: "c"}, []string{"ends_at"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.silences(0).Create(ctx, c.in)
			var se *SilenceError
			if !errors.As(err, &se) {
				t.Fatalf("Create: %v, want a *SilenceError", err)
			}
			for _, field := range c.fields {
				found := false
				for _, p := range se.Problems {
					found = found || strings.HasPrefix(p.Error(), field+":")
				}
				if !found {
					t.Errorf("%q names no %s", err, field)
				}
			}
		})
	}

	// Expire refuses unknown ids and the file's silences.
	if _, err := e.silences(time.Hour).Expire(ctx, "sil-unknown", "ana"); !errors.Is(err, ErrNoSilence) {
		t.Fatalf("Expire of an unknown id: %v, want ErrNoSilence", err)
	}
	if _, err := e.silences(time.Hour).Expire(ctx, cfgID, "ana"); !errors.Is(err, ErrConfigSilence) {
		t.Fatalf("Expire of the file's silence: %v, want ErrConfigSilence", err)
	}
	// Expiring an expired silence changes nothing.
	if _, err := e.silences(time.Hour).Expire(ctx, gone.ID, "bo"); err != nil {
		t.Fatalf("Expire again: %v", err)
	}
}
