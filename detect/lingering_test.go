package detect

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// rotate starts the rotation old → new of client at started, with a grace deadline.
func (s *scenario) rotate(old, new, client string, started, deadline time.Time) {
	s.t.Helper()
	s.lifecycle(
		rotation.Event{TS: started.Add(-30 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: old, ClientID: client},
		rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: old, ClientID: client, NewKeyID: new, GraceUntil: deadline},
	)
}

func (s *scenario) lingering(at time.Time) []finding.Finding {
	s.t.Helper()
	fs, err := NewLingering(s.conn, s.cfg.Lingering).Detect(context.Background(), at)
	if err != nil {
		s.t.Fatal(err)
	}
	return fs
}

func (s *scenario) readiness(at time.Time, key string) Readiness {
	s.t.Helper()
	rep, err := NewLingering(s.conn, s.cfg.Lingering).Readiness(context.Background(), at, key)
	if err != nil {
		s.t.Fatal(err)
	}
	return rep
}

// calls returns events of a caller on key every interval in [from, to).
func calls(key string, caller event, from, to time.Time, interval time.Duration) []event {
	return every(from, to, interval, func(time.Time) (event, bool) {
		caller.KeyID = key
		return caller, true
	})
}

func ptr[T any](v T) *T { return &v }

// only returns the one finding of fs, failing the test when there is not exactly one.
func only(t *testing.T, fs []finding.Finding) finding.Finding {
	t.Helper()
	if len(fs) != 1 {
		t.Fatalf("want 1 finding, got %d: %+v", len(fs), fs)
	}
	return fs[0]
}

func callerOf(t *testing.T, f finding.Finding) Caller {
	t.Helper()
	ev, ok := f.Evidence.(LingeringEvidence)
	if !ok {
		t.Fatalf("evidence is %T, want LingeringEvidence", f.Evidence)
	}
	checkFields(t, f, ev.fields())
	return ev.Caller
}

func sameCaller(t *testing.T, what string, got, want Caller) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// TestLingeringStraggler: three days into a rotation due in 20h, a busy client moved to the new
// key a day ago (benign) while a batch client still calls the old key once an hour. Only the
// straggler is found, as a warning, and keeps the key unsafe until it has migrated.
func TestLingeringStraggler(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	started, deadline := now.Add(-72*time.Hour), now.Add(20*time.Hour)
	s.rotate("kid_old", "kid_new", "acme", started, deadline)
	web := event{ClientID: "acme-web", IP: "192.0.2.1", UA: "acme-sdk/2.0"}
	batch := event{ClientID: "acme-batch", IP: "198.51.100.77", UA: "acme-batch/1.0"}
	s.events(calls("kid_old", web, now.Add(-96*time.Hour), now.Add(-24*time.Hour), 10*time.Minute))
	s.events(calls("kid_new", web, now.Add(-25*time.Hour), now, 10*time.Minute))
	s.events(calls("kid_old", batch, now.Add(-96*time.Hour+17*time.Minute), now, time.Hour))

	want := Caller{
		ClientID: "acme-batch", Requests: 72, FirstSeen: started.Add(17 * time.Minute), LastSeen: now.Add(-43 * time.Minute),
		TopIPs: []Count{{"198.51.100.77", 72}}, TopUserAgents: []Count{{"acme-batch/1.0", 72}},
		LastOK: ptr(now.Add(-43 * time.Minute)), SubCallers: 1, StillOn: []SubCaller{{
			IP: "198.51.100.77", UserAgent: "acme-batch/1.0", Requests: 72, LastSeen: now.Add(-43 * time.Minute), LastOK: now.Add(-43 * time.Minute),
			QuietNeeded: "at least 1h", QuietSoFar: "43m",
		}},
	}
	f := only(t, s.lingering(now))
	if f.Severity != finding.Warning || f.KeyID != "kid_old" || f.ClientID != "acme-batch" || f.RotationID != "kid_old>kid_new" {
		t.Errorf("finding %s %s %s %s, want warning kid_old acme-batch kid_old>kid_new", f.Severity, f.KeyID, f.ClientID, f.RotationID)
	}
	if f.Fingerprint != finding.Fingerprint("lingering", "kid_old", "acme-batch", "kid_old>kid_new") {
		t.Errorf("fingerprint %s is not that of (lingering, kid_old, acme-batch, kid_old>kid_new)", f.Fingerprint)
	}
	wantSummary := "acme-batch still calls kid_old; deadline in 20h (72 requests since the rotation started, last 43m ago; 0% of its traffic is on kid_new); " +
		"still on it: 198.51.100.77 (acme-batch/1.0), last 43m ago"
	if f.Summary != wantSummary {
		t.Errorf("summary\n got %q\nwant %q", f.Summary, wantSummary)
	}
	ev := f.Evidence.(LingeringEvidence)
	if ev.Step != "started" || ev.TimeLeft != "20h0m0s" || !ev.Deadline.Equal(deadline) || !ev.Started.Equal(started) || ev.Finished != nil {
		t.Errorf("evidence %+v: want step started, 20h left, deadline %s, started %s", ev, deadline, started)
	}
	sameCaller(t, "finding's caller", ev.Caller, want)

	rep := s.readiness(now, "kid_old")
	if rep.Safe || rep.State != "retiring" || rep.RotationID != "kid_old>kid_new" || rep.NewKeyID != "kid_new" ||
		rep.Deadline == nil || !rep.Deadline.Equal(deadline) || !rep.CheckedAt.Equal(now) {
		t.Errorf("readiness %+v: want unsafe, retiring, rotation kid_old>kid_new, deadline %s", rep, deadline)
	}
	if len(rep.Remaining) != 1 {
		t.Fatalf("remaining %+v, want only acme-batch", rep.Remaining)
	}
	sameCaller(t, "remaining caller", rep.Remaining[0], want)
	if want := "kid_old is still used by 1 caller (acme-batch, last 43m ago) not yet on kid_new"; rep.Reason != want {
		t.Errorf("reason %q, want %q", rep.Reason, want)
	}

	// Two hours on, without a call (from before the migration below): past quiet_for, the
	// straggler is judged by its rhythm, hourly, which needs 3 h of quiet.
	quiet := s.readiness(now.Add(2*time.Hour), "kid_old")
	if len(quiet.Remaining) != 1 || len(quiet.Remaining[0].StillOn) != 1 {
		t.Fatalf("two hours on: remaining %+v, want acme-batch still on kid_old", quiet.Remaining)
	}
	if sc := quiet.Remaining[0].StillOn[0]; sc.Cadence != "hourly or more often" || sc.QuietNeeded != "3h" || sc.QuietSoFar != "2h43m" {
		t.Errorf("two hours on: %+v, want it judged hourly, 3h of quiet needed, 2h43m so far", sc)
	}

	// The straggler migrates: from an hour after now it calls only with the new key. Two hours
	// later its last old-key call is past quiet_for and nothing depends on kid_old any more.
	later := now.Add(3 * time.Hour)
	s.events(calls("kid_new", batch, later.Add(-2*time.Hour), later, 10*time.Minute))
	rep = s.readiness(later, "kid_old")
	if !rep.Safe || len(rep.Remaining) != 0 {
		t.Errorf("after the migration: readiness %+v, want safe with nothing remaining", rep)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"remaining":[]`) {
		t.Errorf("readiness JSON %s: want an empty remaining list, not null", b)
	}
	if fs := s.lingering(later); len(fs) != 0 {
		t.Errorf("after the migration: findings %+v, want none", fs)
	}
}

// TestLingeringNightlyJob: a job without a resolved client calls the old key once a night at
// 02:00, since long before the rotation; it is found by its (IP, user agent). Another unresolved
// caller that moved to the new key two days ago is not. The finding is the rotation's one about
// its callers without a client (see TestLingeringUnidentifiedCallers): its fingerprint is not the
// job's IP and user agent, so it stays the same finding when another such caller shows up.
func TestLingeringNightlyJob(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	s.rotate("kid_old", "kid_new", "acme", now.Add(-72*time.Hour), now.Add(20*time.Hour))
	nightly := event{IP: "203.0.113.50", UA: "nightly-export/3.2"}
	moved := event{IP: "203.0.113.9", UA: "cron-b/1.0"}
	firstNight := time.Date(2026, 11, 10, 2, 0, 0, 0, time.UTC)
	s.events(calls("kid_old", nightly, firstNight, now, 24*time.Hour))
	s.events(calls("kid_old", moved, now.Add(-96*time.Hour), now.Add(-48*time.Hour), time.Hour))
	s.events(calls("kid_new", moved, now.Add(-48*time.Hour), now, time.Hour))

	f := only(t, s.lingering(now))
	if f.ClientID != "" || f.Severity != finding.Warning {
		t.Errorf("finding client %q severity %s, want no client, warning", f.ClientID, f.Severity)
	}
	if want := finding.Fingerprint("lingering", "kid_old", "(unidentified callers)", "kid_old>kid_new"); f.Fingerprint != want {
		t.Errorf("fingerprint %s, want %s (the rotation's callers without a client)", f.Fingerprint, want)
	}
	if ev := f.Evidence.(LingeringEvidence); ev.Callers != 1 || ev.Addresses != 1 || ev.UserAgents != 1 {
		t.Errorf("evidence counts %d callers, %d addresses, %d user agents; want 1 of each", ev.Callers, ev.Addresses, ev.UserAgents)
	}
	lastNight := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	sameCaller(t, "nightly caller", callerOf(t, f), Caller{
		IP: "203.0.113.50", UserAgent: "nightly-export/3.2", Requests: 3, FirstSeen: lastNight.Add(-48 * time.Hour), LastSeen: lastNight,
		LastOK: ptr(lastNight), Cadence: "about daily", QuietNeeded: "1d12h",
	})
	if !strings.HasPrefix(f.Summary, "203.0.113.50 (nightly-export/3.2) still calls kid_old") {
		t.Errorf("summary %q does not name the caller by IP and user agent", f.Summary)
	}
	rep := s.readiness(now, "kid_old")
	if rep.Safe || len(rep.Remaining) != 1 || rep.Remaining[0].IP != "203.0.113.50" {
		t.Errorf("readiness %+v, want unsafe with the nightly job remaining", rep)
	}
}

// TestLingeringSeverity: the same straggler on rotations due at different times is silent while
// the deadline is further than info_before, then info, warning and critical as it nears and
// passes. The score rises with urgency.
func TestLingeringSeverity(t *testing.T) {
	cases := []struct {
		name       string
		deadlineIn time.Duration
		started    time.Duration    // before now
		want       finding.Severity // 0: no finding
		summary    string
	}{
		{"far", 100 * time.Hour, 24 * time.Hour, 0, ""},
		{"info", 70 * time.Hour, 48 * time.Hour, finding.Info, "deadline in 2d22h"},
		{"warning", 20 * time.Hour, 72 * time.Hour, finding.Warning, "deadline in 20h"},
		{"critical", 30 * time.Minute, 36 * time.Hour, finding.Critical, "deadline in 30m"},
		{"passed", -2 * time.Hour, 60 * time.Hour, finding.Critical, "deadline passed 2h ago"},
	}
	s := newScenario(t)
	for _, c := range cases {
		old := "kid_" + c.name
		s.rotate(old, old+"_new", c.name, now.Add(-c.started), now.Add(c.deadlineIn))
		s.events(calls(old, event{ClientID: c.name}, now.Add(-5*24*time.Hour), now, 30*time.Minute))
	}
	found := map[string]finding.Finding{}
	for _, f := range s.lingering(now) {
		found[f.ClientID] = f
	}
	lastScore := 0.0
	for _, c := range cases {
		f, ok := found[c.name]
		if c.want == 0 {
			if ok {
				t.Errorf("%s: deadline in %s: finding %+v, want none", c.name, c.deadlineIn, f)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: no finding", c.name)
			continue
		}
		if f.Severity != c.want {
			t.Errorf("%s: severity %s, want %s", c.name, f.Severity, c.want)
		}
		if !strings.Contains(f.Summary, c.summary) {
			t.Errorf("%s: summary %q does not say %q", c.name, f.Summary, c.summary)
		}
		// Called every 30 minutes, also before the rotation: only calls since its start count.
		if got, want := callerOf(t, f).Requests, uint64(2*c.started/time.Hour); got != want {
			t.Errorf("%s: %d requests, want %d since the rotation started", c.name, got, want)
		}
		if f.Score <= lastScore {
			t.Errorf("%s: score %g, want more than the less urgent case's %g", c.name, f.Score, lastScore)
		}
		lastScore = f.Score
	}
}

// TestLingeringAfterRetirement: use of a key after it was retired or revoked (a gateway that still
// accepts it) is critical and outranks everything, while clients that moved or stopped before the
// retirement, a client whose every request since was refused, and a key retired longer ago than
// after_retired, are left alone.
func TestLingeringAfterRetirement(t *testing.T) {
	cases := []struct {
		step      string // lifecycle event ending the rotation
		finished  time.Duration
		wantFound bool
	}{
		{rotation.KeyRetired, 2 * 24 * time.Hour, true},
		{rotation.KeyRevoked, 2 * 24 * time.Hour, true},
		{rotation.KeyRetired, 10 * 24 * time.Hour, false}, // beyond after_retired (7d)
	}
	s := newScenario(t)
	for i, c := range cases {
		old := "kid_" + string(rune('a'+i))
		finished := now.Add(-c.finished)
		s.rotate(old, old+"_new", "acme", finished.Add(-3*24*time.Hour), finished)
		s.lifecycle(rotation.Event{TS: finished, Type: c.step, KeyID: old, ClientID: "acme"})
		// "late" never moves, and a gateway still accepts the key after its end.
		s.events(calls(old, event{ClientID: "late"}, finished.Add(-4*24*time.Hour), now, time.Hour))
		// "refused" never moves either: accepted until the key ends, refused after; it does not
		// depend on the key.
		s.events(calls(old, event{ClientID: "refused"}, finished.Add(-4*24*time.Hour), finished, time.Hour))
		s.events(calls(old, event{ClientID: "refused", Outcome: "invalid_key"}, finished, now, time.Hour))
		// "done" moved to the new key a day before the end.
		s.events(calls(old, event{ClientID: "done"}, finished.Add(-4*24*time.Hour), finished.Add(-24*time.Hour), time.Hour))
		s.events(calls(old+"_new", event{ClientID: "done"}, finished.Add(-24*time.Hour), now, time.Hour))
		// "gone" stopped calling a day before the end without moving (decommissioned).
		s.events(calls(old, event{ClientID: "gone"}, finished.Add(-4*24*time.Hour), finished.Add(-24*time.Hour), time.Hour))
	}
	fs := s.lingering(now)
	byKey := map[string]finding.Finding{}
	for _, f := range fs {
		byKey[f.KeyID] = f
	}
	for i, c := range cases {
		old := "kid_" + string(rune('a'+i))
		f, ok := byKey[old]
		if !c.wantFound {
			if ok {
				t.Errorf("%s %s ago: finding %+v, want none", c.step, c.finished, f)
			}
			continue
		}
		if !ok {
			t.Errorf("%s %s ago: no finding for %s (have %+v)", c.step, c.finished, old, fs)
			continue
		}
		ev := f.Evidence.(LingeringEvidence)
		wantStep := strings.TrimPrefix(c.step, "key.")
		if f.Severity != finding.Critical || f.ClientID != "late" || f.Score < 100 || ev.Step != wantStep ||
			ev.Finished == nil || !ev.Finished.Equal(now.Add(-c.finished)) {
			t.Errorf("%s: finding %+v, want critical for late with score >= 100, step %s", old, f, wantStep)
		}
		// Counted since the end: 48 hourly calls, all accepted.
		if ev.Caller.Requests != 48 || ev.Caller.Failures != 0 || !ev.Caller.LastSeen.Equal(now.Add(-time.Hour)) || !ev.Since.Equal(*ev.Finished) {
			t.Errorf("%s: caller %+v since %s, want 48 requests, no failure, last seen an hour ago, since the end", old, ev.Caller, ev.Since)
		}
		if want := "late still calls " + old + ", " + wantStep + " 2d ago"; !strings.HasPrefix(f.Summary, want) {
			t.Errorf("%s: summary %q, want it to start %q", old, f.Summary, want)
		}
	}
	if len(fs) != 2 {
		t.Errorf("%d findings, want 2: %+v", len(fs), fs)
	}

	rep := s.readiness(now, "kid_a")
	if rep.Safe || rep.Verdict != VerdictUnsafe || rep.State != "retired" || len(rep.Remaining) != 1 || rep.Remaining[0].ClientID != "late" ||
		!strings.HasPrefix(rep.Reason, "kid_a was retired 2d ago but is still used by 1 caller (late") ||
		len(rep.Refused) != 1 || rep.Refused[0].ClientID != "refused" {
		t.Errorf("readiness of a retired key still called: %+v", rep)
	}
}

// TestLingeringSideBySide: a client calling with both keys is reported while it still uses the
// old one, with the share of its traffic already on the new key.
func TestLingeringSideBySide(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	started := now.Add(-72 * time.Hour)
	s.rotate("kid_old", "kid_new", "acme", started, now.Add(20*time.Hour))
	dual := event{ClientID: "dual", IP: "192.0.2.8", UA: "dual/1.0"}
	s.events(calls("kid_old", dual, started, now, 30*time.Minute))
	s.events(calls("kid_new", dual, started, now, 10*time.Minute))

	f := only(t, s.lingering(now))
	sameCaller(t, "dual", callerOf(t, f), Caller{
		ClientID: "dual", Requests: 144, FirstSeen: started, LastSeen: now.Add(-30 * time.Minute),
		NewKeyRequests: 432, NewKeyShare: 0.75, NewKeyLastSeen: ptr(now.Add(-10 * time.Minute)),
		TopIPs: []Count{{"192.0.2.8", 144}}, TopUserAgents: []Count{{"dual/1.0", 144}},
		LastOK: ptr(now.Add(-30 * time.Minute)), SubCallers: 1, StillOn: []SubCaller{{
			IP: "192.0.2.8", UserAgent: "dual/1.0", Requests: 144, LastSeen: now.Add(-30 * time.Minute), LastOK: now.Add(-30 * time.Minute),
			SuccessorLastOK: ptr(now.Add(-10 * time.Minute)), QuietNeeded: "at least 1h", QuietSoFar: "30m",
		}},
	})
	if !strings.Contains(f.Summary, "75% of its traffic is on kid_new") {
		t.Errorf("summary %q does not give the new key's share", f.Summary)
	}
	// Once it stops using the old key and quiet_for has passed, it no longer remains.
	if fs := s.lingering(now.Add(90 * time.Minute)); len(fs) != 0 {
		t.Errorf("two hours after its last old-key call (quiet_for 1h): findings %+v, want none", fs)
	}
}

// TestReadinessWithoutRotation: a key no rotation retires is safe only when nothing called it
// lately (or since it was retired); a key nobody knows is an error.
func TestReadinessWithoutRotation(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	created := now.Add(-90 * 24 * time.Hour)
	for _, k := range []string{"kid_busy", "kid_idle", "kid_gone", "kid_zombie"} {
		s.lifecycle(rotation.Event{TS: created, Type: rotation.KeyCreated, KeyID: k, ClientID: "acme"})
	}
	s.lifecycle(
		rotation.Event{TS: now.Add(-5 * 24 * time.Hour), Type: rotation.KeyRetired, KeyID: "kid_gone", ClientID: "acme"},
		rotation.Event{TS: now.Add(-5 * 24 * time.Hour), Type: rotation.KeyRetired, KeyID: "kid_zombie", ClientID: "acme"},
	)
	s.events(calls("kid_busy", event{ClientID: "acme"}, now.Add(-2*time.Hour), now, time.Hour))
	s.events(calls("kid_idle", event{ClientID: "acme"}, now.Add(-40*24*time.Hour), now.Add(-39*24*time.Hour), time.Hour))
	s.events(calls("kid_gone", event{ClientID: "acme"}, now.Add(-7*24*time.Hour), now.Add(-6*24*time.Hour), time.Hour))
	s.events(calls("kid_zombie", event{IP: "203.0.113.4", UA: "old-tool/0.9"}, now.Add(-7*24*time.Hour), now, 6*time.Hour))
	s.events(calls("kid_unmanaged", event{ClientID: "shadow"}, now.Add(-3*time.Hour), now, time.Hour))
	s.events(calls("kid_forgotten", event{ClientID: "shadow"}, now.Add(-60*24*time.Hour), now.Add(-59*24*time.Hour), time.Hour))

	cases := []struct {
		key, state string
		safe       bool
		reason     string
		remaining  int
	}{
		{"kid_busy", "active", false, "no rotation started, and kid_busy is used by 1 caller (acme, last 1h ago) in the last 30d", 1},
		{"kid_idle", "active", true, "no rotation retires kid_idle and nothing called it in the last 30d", 0},
		{"kid_gone", "retired", true, "no rotation retires kid_gone and nothing called it since it was retired 5d ago", 0},
		{"kid_zombie", "retired", false, "no rotation started, and kid_zombie is used by 1 caller (203.0.113.4 (old-tool/0.9), last 6h ago) since it was retired 5d ago", 1},
		{"kid_unmanaged", "unknown", false, "no rotation started, and kid_unmanaged is used by 1 caller (shadow, last 1h ago) in the last 30d", 1},
		{"kid_forgotten", "unknown", true, "no rotation retires kid_forgotten and nothing called it in the last 30d", 0},
	}
	for _, c := range cases {
		rep := s.readiness(now, c.key)
		if rep.Safe != c.safe || rep.State != c.state || rep.Reason != c.reason || len(rep.Remaining) != c.remaining || rep.RotationID != "" {
			t.Errorf("%s: readiness %+v\nwant safe=%v state %s, %d remaining, reason %q", c.key, rep, c.safe, c.state, c.remaining, c.reason)
		}
	}

	_, err := NewLingering(s.conn, s.cfg.Lingering).Readiness(context.Background(), now, "kid_nobody")
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "kid_nobody") {
		t.Errorf("readiness of a key nobody knows: error %v, want ErrUnknownKey naming the key", err)
	}
}

// TestLingeringJudgesAsOfNow: the first pass over key_caller_months sees whole months, so it sees
// calls after the instant judged; the answer is that of the calls up to it. A batch client calls
// the old key hourly since before a rotation that started in the previous month, and last 2h43m
// ago (its rhythm needs 3h of quiet); it moves to the new key an hour after now, and calls the old
// key once more half an hour later. As of now it remains, judged by its hourly rhythm, with
// the counts since the rotation started; four hours on it has moved.
func TestLingeringJudgesAsOfNow(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	started, deadline := now.Add(-22*24*time.Hour), now.Add(20*time.Hour)
	s.rotate("kid_old", "kid_new", "acme", started, deadline)
	batch := event{ClientID: "acme-batch", IP: "198.51.100.77", UA: "acme-batch/1.0"}
	s.events(calls("kid_old", batch, started.Add(-24*time.Hour+17*time.Minute), now.Add(-2*time.Hour), time.Hour))
	s.events(calls("kid_old", batch, now.Add(90*time.Minute), now.Add(91*time.Minute), time.Hour))
	s.events(calls("kid_new", batch, now.Add(time.Hour), now.Add(3*time.Hour), 10*time.Minute))

	c := callerOf(t, only(t, s.lingering(now)))
	if len(c.StillOn) != 1 || c.StillOn[0].Cadence != "hourly or more often" || c.StillOn[0].QuietNeeded != "3h" {
		t.Errorf("still on %+v, want one pair judged hourly, 3h of quiet needed", c.StillOn)
	}
	if c.ClientID != "acme-batch" || c.Requests != 526 || !c.FirstSeen.Equal(started.Add(17*time.Minute)) ||
		!c.LastSeen.Equal(now.Add(-2*time.Hour-43*time.Minute)) || c.NewKeyRequests != 0 || c.NewKeyLastSeen != nil {
		t.Errorf("caller %+v: want acme-batch, 526 requests since %s, last 2h43m ago, none on kid_new", c, started.Add(17*time.Minute))
	}
	if rep := s.readiness(now, "kid_old"); rep.Safe || len(rep.Remaining) != 1 || rep.Remaining[0].Requests != 526 {
		t.Errorf("readiness %+v: want unsafe, acme-batch remaining with 526 requests", rep)
	}
	if fs := s.lingering(now.Add(4 * time.Hour)); len(fs) != 0 {
		t.Errorf("four hours on: findings %+v, want none (acme-batch moved)", fs)
	}
}
