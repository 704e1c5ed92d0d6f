package detect

import (
	"context"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/rotation"
)

// TestHygiene fills one database with keys of every kind the detector tells apart and checks which
// get a finding, of which kind and severity, and with what evidence.
func TestHygiene(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	day := 24 * time.Hour
	daily := func(key, client string) func(time.Time) (event, bool) {
		return func(time.Time) (event, bool) { return event{KeyID: key, ClientID: client}, true }
	}
	s.lifecycle(
		rotation.Event{TS: now.Add(-120 * day), Type: rotation.KeyCreated, KeyID: "kid_old_unrotated", ClientID: "acme"},
		rotation.Event{TS: now.Add(-200 * day), Type: rotation.KeyCreated, KeyID: "kid_ancient", ClientID: "acme"},
		rotation.Event{TS: now.Add(-200 * day), Type: rotation.KeyCreated, KeyID: "kid_rotated", ClientID: "globex"},
		rotation.Event{TS: now.Add(-10 * day), Type: rotation.KeyRotationStarted, KeyID: "kid_rotated", ClientID: "globex",
			NewKeyID: "kid_rotated_new", GraceUntil: now.Add(20 * day)},
		rotation.Event{TS: now.Add(-150 * day), Type: rotation.KeyCreated, KeyID: "kid_retired", ClientID: "globex"},
		rotation.Event{TS: now.Add(-100 * day), Type: rotation.KeyRetired, KeyID: "kid_retired", ClientID: "globex"},
		rotation.Event{TS: now.Add(-60 * day), Type: rotation.KeyCreated, KeyID: "kid_unused", ClientID: "initech"},
		rotation.Event{TS: now.Add(-40 * day), Type: rotation.KeyCreated, KeyID: "kid_never_used", ClientID: "initech"},
		rotation.Event{TS: now.Add(-60 * day), Type: rotation.KeyCreated, KeyID: "kid_busy", ClientID: "initech"},
		rotation.Event{TS: now.Add(-5 * day), Type: rotation.KeyCreated, KeyID: "kid_fresh_unused", ClientID: "initech"},
		// expires_at: within the 14 days, within a day, passed, far off, and on a key being rotated.
		rotation.Event{TS: now.Add(-20 * day), Type: rotation.KeyCreated, KeyID: "kid_expiring", ClientID: "umbrella", ExpiresAt: now.Add(5 * day)},
		rotation.Event{TS: now.Add(-20 * day), Type: rotation.KeyCreated, KeyID: "kid_expiring_soon", ClientID: "umbrella", ExpiresAt: now.Add(12 * time.Hour)},
		rotation.Event{TS: now.Add(-20 * day), Type: rotation.KeyCreated, KeyID: "kid_expired", ClientID: "umbrella", ExpiresAt: now.Add(-2 * day)},
		rotation.Event{TS: now.Add(-20 * day), Type: rotation.KeyCreated, KeyID: "kid_expiring_later", ClientID: "umbrella", ExpiresAt: now.Add(30 * day)},
		rotation.Event{TS: now.Add(-20 * day), Type: rotation.KeyCreated, KeyID: "kid_expiring_rotating", ClientID: "umbrella", ExpiresAt: now.Add(2 * day)},
		rotation.Event{TS: now.Add(-day), Type: rotation.KeyRotationStarted, KeyID: "kid_expiring_rotating", ClientID: "umbrella",
			NewKeyID: "kid_expiring_rotating_new", GraceUntil: now.Add(day)},
	)
	// One insert may touch at most 100 daily partitions: the oldest key is used weekly.
	var evs []event
	evs = append(evs, every(now.Add(-119*day), now, 7*day, daily("kid_old_unrotated", "acme"))...)
	evs = append(evs, every(now.Add(-10*day), now, day, daily("kid_ancient", "acme"))...)
	evs = append(evs, every(now.Add(-10*day), now, day, daily("kid_rotated", "globex"))...)
	evs = append(evs, every(now.Add(-10*day), now, day, daily("kid_rotated_new", "globex"))...)
	evs = append(evs, every(now.Add(-59*day), now.Add(-45*day), day, daily("kid_unused", "initech"))...)
	evs = append(evs, every(now.Add(-59*day), now, day, daily("kid_busy", "initech"))...)
	// Seen only in traffic: a client's key with no lifecycle events, last used long ago, and keys
	// the gateway could not tie to a client (made-up keys that failed).
	evs = append(evs, every(now.Add(-100*day), now.Add(-95*day), day, daily("kid_traffic_only", "hooli"))...)
	evs = append(evs, every(now.Add(-100*day), now.Add(-95*day), day, func(time.Time) (event, bool) {
		return event{KeyID: "fp_0badc0ffee", Outcome: "invalid_key"}, true
	})...)
	s.events(evs)

	findings, err := NewHygiene(s.conn, s.cfg.Hygiene).Detect(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		severity finding.Severity
		client   string
	}
	wants := map[[2]string]want{
		{"kid_old_unrotated", hygienePolicyAge}: {finding.Info, "acme"},
		{"kid_ancient", hygienePolicyAge}:       {finding.Warning, "acme"},
		{"kid_unused", hygieneUnused}:           {finding.Info, "initech"},
		{"kid_never_used", hygieneUnused}:       {finding.Info, "initech"},
		{"kid_traffic_only", hygienePolicyAge}:  {finding.Info, "hooli"},
		{"kid_traffic_only", hygieneUnused}:     {finding.Warning, "hooli"},
		{"kid_expiring", hygieneExpiring}:       {finding.Warning, "umbrella"},
		{"kid_expiring_soon", hygieneExpiring}:  {finding.Critical, "umbrella"},
		{"kid_expired", hygieneExpiring}:        {finding.Critical, "umbrella"},
	}
	got := map[[2]string]finding.Finding{}
	for _, f := range findings {
		ev, ok := f.Evidence.(HygieneEvidence)
		if !ok {
			t.Fatalf("evidence of %s is %T", f.Summary, f.Evidence)
		}
		checkFields(t, f, ev.fields())
		id := [2]string{f.KeyID, ev.Kind}
		if _, dup := got[id]; dup {
			t.Errorf("two %s findings for %s", ev.Kind, f.KeyID)
		}
		got[id] = f
		w, ok := wants[id]
		if !ok {
			t.Errorf("unexpected finding: %s", f.Summary)
			continue
		}
		if f.Severity != w.severity || f.ClientID != w.client || f.Detector != "hygiene" || f.RotationID != "" {
			t.Errorf("%s %s: severity %s client %q detector %q rotation %q, want %s %q hygiene \"\"",
				f.KeyID, ev.Kind, f.Severity, f.ClientID, f.Detector, f.RotationID, w.severity, w.client)
		}
		if f.Fingerprint != finding.Fingerprint("hygiene", f.KeyID, f.ClientID, ev.Kind) {
			t.Errorf("%s %s: fingerprint does not carry the kind", f.KeyID, ev.Kind)
		}
		t.Logf("%s: %s", f.Severity, f.Summary)
	}
	for id := range wants {
		if _, ok := got[id]; !ok {
			t.Errorf("no %s finding for %s", id[1], id[0])
		}
	}

	age := got[[2]string{"kid_old_unrotated", hygienePolicyAge}].Evidence.(HygieneEvidence)
	if !age.Created.Equal(now.Add(-120*day)) || age.AgeDays != 120 || age.LimitDays != 90 || age.Requests != 17 ||
		!age.LastUsed.Equal(now.Add(-7*day)) || age.State != "active" {
		t.Errorf("policy_age evidence: %+v", age)
	}
	unused := got[[2]string{"kid_unused", hygieneUnused}].Evidence.(HygieneEvidence)
	if !unused.LastUsed.Equal(now.Add(-46*day)) || unused.UnusedDays != 46 || unused.LimitDays != 30 || unused.Requests != 14 {
		t.Errorf("unused evidence: %+v", unused)
	}
	expiring := got[[2]string{"kid_expiring", hygieneExpiring}].Evidence.(HygieneEvidence)
	if expiring.ExpiresAt == nil || !expiring.ExpiresAt.Equal(now.Add(5*day)) || expiring.DaysLeft != 5 || expiring.LimitDays != 14 {
		t.Errorf("expiring evidence: %+v", expiring)
	}
	never := got[[2]string{"kid_never_used", hygieneUnused}].Evidence.(HygieneEvidence)
	if !never.LastUsed.IsZero() || never.UnusedDays != 40 || never.Requests != 0 {
		t.Errorf("never-used evidence: %+v", never)
	}
}
