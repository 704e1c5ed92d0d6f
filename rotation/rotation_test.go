package rotation

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	created := Event{TS: t0, Type: KeyCreated, KeyID: "kid_old", ClientID: "acme"}
	started := Event{TS: t0.Add(24 * time.Hour), Type: KeyRotationStarted, KeyID: "kid_old", ClientID: "acme",
		NewKeyID: "kid_new", GraceUntil: t0.Add(72 * time.Hour)}
	retired := Event{TS: t0.Add(72 * time.Hour), Type: KeyRetired, KeyID: "kid_old", ClientID: "acme"}
	revoked := Event{TS: t0.Add(96 * time.Hour), Type: KeyRevoked, KeyID: "kid_old", ClientID: "acme"}
	revokedEarly := Event{TS: t0.Add(48 * time.Hour), Type: KeyRevoked, KeyID: "kid_old", ClientID: "acme"}

	cases := []struct {
		name     string
		events   []Event // in arrival order
		state    State   // of kid_old
		updated  time.Time
		steps    []Step
		finished time.Time
	}{
		{"in order", []Event{created, started, retired}, Retired, retired.TS,
			[]Step{{StepStarted, started.TS}, {StepRetired, retired.TS}}, retired.TS},
		{"retired arrives before rotation_started", []Event{retired, created, started}, Retired, retired.TS,
			[]Step{{StepStarted, started.TS}, {StepRetired, retired.TS}}, retired.TS},
		{"duplicates count once", []Event{created, started, created, started, retired, retired}, Retired, retired.TS,
			[]Step{{StepStarted, started.TS}, {StepRetired, retired.TS}}, retired.TS},
		{"running", []Event{started, created}, Retiring, started.TS,
			[]Step{{StepStarted, started.TS}}, time.Time{}},
		{"revoked after retired", []Event{created, started, retired, revoked}, Revoked, revoked.TS,
			[]Step{{StepStarted, started.TS}, {StepRetired, retired.TS}, {StepRevoked, revoked.TS}}, retired.TS},
		{"retired after revoked stays revoked", []Event{retired, created, revokedEarly, started}, Revoked, revokedEarly.TS,
			[]Step{{StepStarted, started.TS}, {StepRevoked, revokedEarly.TS}, {StepRetired, retired.TS}}, revokedEarly.TS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := Build(c.events)
			if len(m.Rotations) != 1 {
				t.Fatalf("%d rotations, want 1: %+v", len(m.Rotations), m.Rotations)
			}
			r := m.Rotations[0]
			want := &Rotation{ID: "kid_old>kid_new", ClientID: "acme", OldKeyID: "kid_old", NewKeyID: "kid_new",
				Started: started.TS, Deadline: started.GraceUntil, Finished: c.finished, Steps: c.steps}
			if !reflect.DeepEqual(r, want) {
				t.Errorf("rotation\n got %+v\nwant %+v", r, want)
			}
			if running := c.finished.IsZero(); r.Running() != running {
				t.Errorf("running %v, want %v", r.Running(), running)
			}
			old := m.Key("kid_old")
			if old.State != c.state || !old.Updated.Equal(c.updated) || !old.Created.Equal(t0) || old.Rotation != r || old.Predecessor != nil {
				t.Errorf("kid_old %+v: want %s since %s, created %s, retired by %s", old, c.state, c.updated, t0, r.ID)
			}
			nk := m.Key("kid_new")
			if nk == nil || nk.State != Active || nk.ClientID != "acme" || nk.Predecessor != r || nk.Rotation != nil || !nk.Created.Equal(started.TS) {
				t.Errorf("kid_new %+v: want active, client acme, introduced by %s at %s", nk, r.ID, started.TS)
			}
		})
	}
}

// TestBuildOrderIndependent: the model is the same whatever order the events arrive in.
func TestBuildOrderIndependent(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := []Event{
		{TS: t0, Type: KeyCreated, KeyID: "a", ClientID: "acme"},
		{TS: t0.Add(time.Hour), Type: KeyRotationStarted, KeyID: "a", ClientID: "acme", NewKeyID: "b", GraceUntil: t0.Add(48 * time.Hour)},
		{TS: t0.Add(48 * time.Hour), Type: KeyRetired, KeyID: "a", ClientID: "acme"},
		{TS: t0.Add(72 * time.Hour), Type: KeyRotationStarted, KeyID: "b", ClientID: "acme", NewKeyID: "c", GraceUntil: t0.Add(96 * time.Hour)},
		{TS: t0.Add(72 * time.Hour), Type: KeyCreated, KeyID: "x", ClientID: "other"},
	}
	want := Build(events)
	reversed := slices.Clone(events)
	slices.Reverse(reversed)
	if got := Build(reversed); !reflect.DeepEqual(got, want) {
		t.Errorf("reversed arrival:\n got %+v\nwant %+v", got, want)
	}
	if b := want.Key("b"); b.State != Retiring || b.Predecessor == nil || b.Predecessor.ID != "a>b" || b.Rotation == nil || b.Rotation.ID != "b>c" {
		t.Errorf("b %+v: want retiring, introduced by a>b, retired by b>c", b)
	}
}

// TestBuildTiesIndependentOfArrival: events of one time, type and key are taken by successor,
// deadline and client, so the key_lifecycle view (which has no arrival order) can follow Build.
func TestBuildTiesIndependentOfArrival(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := []Event{
		{TS: t0, Type: KeyRotationStarted, KeyID: "a", NewKeyID: "b", GraceUntil: t0.Add(24 * time.Hour)},
		{TS: t0, Type: KeyRotationStarted, KeyID: "a", ClientID: "globex", NewKeyID: "c", GraceUntil: t0.Add(72 * time.Hour)},
		{TS: t0, Type: KeyRotationStarted, KeyID: "a", ClientID: "acme", NewKeyID: "c", GraceUntil: t0.Add(48 * time.Hour)},
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		evs := make([]Event, len(order))
		for i, j := range order {
			evs[i] = events[j]
		}
		m := Build(evs)
		a := m.Key("a")
		if a.ClientID != "acme" || a.Rotation == nil || a.Rotation.ID != "a>c" || a.Rotation.ClientID != "acme" || !a.Rotation.Deadline.Equal(t0.Add(72*time.Hour)) {
			t.Errorf("arrival %v: a %+v rotation %+v; want client acme, retired by a>c (client acme) until %s", order, a, a.Rotation, t0.Add(72*time.Hour))
		}
		if b := m.Key("b"); b.ClientID != "" {
			t.Errorf("arrival %v: b's client %q, want none (a had none yet when a>b started)", order, b.ClientID)
		}
	}
}

// TestSuccessors: a key's successors follow the chain of rotations, nearest first, every rotation
// from a key included, without looping on a chain that rotates back.
func TestSuccessors(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	start := func(old, new string, h int) Event {
		return Event{TS: t0.Add(time.Duration(h) * time.Hour), Type: KeyRotationStarted, KeyID: old, NewKeyID: new}
	}
	m := Build([]Event{start("a", "b", 1), start("b", "c", 2), start("c", "a", 3), start("b", "d", 4), start("x", "y", 5)})
	cases := map[string][]string{
		"a": {"b", "c", "d"}, "b": {"c", "d", "a"}, "c": {"a", "b", "d"}, "d": nil, "y": nil, "x": {"y"}, "nobody": nil,
	}
	for key, want := range cases {
		if got := m.Successors(key); !slices.Equal(got, want) {
			t.Errorf("successors of %s: %v, want %v", key, got, want)
		}
	}
	var long []Event
	for i := range 100 {
		long = append(long, start(string(rune('A'+i)), string(rune('A'+i+1)), i))
	}
	if got := Build(long).Successors("A"); len(got) != maxSuccessors || got[0] != "B" {
		t.Errorf("a 100-key chain: %d successors from %v, want the nearest %d", len(got), got[:1], maxSuccessors)
	}
}
