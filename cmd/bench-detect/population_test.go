package main

import (
	"testing"
	"time"
)

func TestPopulation(t *testing.T) {
	now := time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)
	p := newPopulation(10_000, now)
	if got := p.counts(); got != [3]int{300, 150, 50} {
		t.Errorf("rotations running, retired, revoked = %v, want [300 150 50]", got)
	}
	for _, r := range p.rotations {
		if r.oldKey%p.clients != r.client || r.newKey%p.clients != r.client || r.newKey >= p.keys {
			t.Errorf("rotation %d>%d: keys not both of client %d among %d keys", r.oldKey, r.newKey, r.client, p.keys)
		}
		if !r.started.Before(r.migrated) || !r.started.Before(now) {
			t.Errorf("rotation %d>%d: started %s, migrated %s: want started first, in the past", r.oldKey, r.newKey, r.started, r.migrated)
		}
		switch r.kind {
		case running:
			if !r.finished.IsZero() || !r.deadline.After(now) || r.deadline.After(now.Add(72*time.Hour)) {
				t.Errorf("running rotation %d>%d: finished %s, deadline %s: want no finish, deadline in the next 72h", r.oldKey, r.newKey, r.finished, r.deadline)
			}
		default:
			if r.finished.IsZero() || !r.finished.Before(now) || r.finished.Before(now.Add(-73*time.Hour)) || !r.migrated.Before(r.finished) {
				t.Errorf("%s rotation %d>%d: migrated %s, finished %s: want migrated, then finished in the last 72h", r.kind, r.oldKey, r.newKey, r.migrated, r.finished)
			}
		}
	}
	for k := range leakKeys {
		key := 3 + 10*k
		if key%p.clients%5 == 0 {
			t.Errorf("leak key %d belongs to a rotating client", key)
		}
	}

	events := p.lifecycleEvents()
	types := map[string]int{}
	for _, e := range events {
		types[e.typ]++
	}
	want := map[string]int{"key.created": 10_100, "key.rotation_started": 500, "key.retired": 150, "key.revoked": 50}
	for typ, n := range want {
		if types[typ] != n {
			t.Errorf("%d %s lifecycle events, want %d", types[typ], typ, n)
		}
	}
	migrated, finished, fail := p.rotationArrays()
	if len(migrated) != 500 || len(finished) != 500 || len(fail) != 500 {
		t.Errorf("rotation arrays of %d, %d, %d elements, want 500 each", len(migrated), len(finished), len(fail))
	}
}

func TestTimingOf(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name       string
		in         []time.Duration
		med, least time.Duration
	}{
		{"one", []time.Duration{5 * ms}, 5 * ms, 5 * ms},
		{"odd", []time.Duration{9 * ms, 1 * ms, 4 * ms}, 4 * ms, 1 * ms},
		{"even", []time.Duration{8 * ms, 2 * ms, 4 * ms, 6 * ms}, 5 * ms, 2 * ms},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := timingOf(c.in)
			if got.median != c.med || got.min != c.least {
				t.Errorf("timingOf(%v) = median %s, min %s; want %s, %s", c.in, got.median, got.min, c.med, c.least)
			}
		})
	}
}
