package main

import (
	"fmt"
	"time"
)

// population is who calls and which keys rotate. Client j (0 ≤ j < clients) holds the keys j,
// j+clients, j+2·clients and j+3·clients. Every fifth client, up to rotations of them, rotates its
// first key to its second: rotation i moves client 5i from key 5i to key 5i+clients.
//
// The event generator (generateEvents) and the lifecycle events (lifecycleEvents) both follow this
// layout; the per-rotation times it needs are passed to it as arrays (rotationArrays).
type population struct {
	keys, clients int
	now           time.Time
	rotations     []rotationPlan
}

// rotationKind is what became of a rotation by now.
type rotationKind int

const (
	running rotationKind = iota
	retired
	revoked
)

func (k rotationKind) String() string { return [...]string{"running", "retired", "revoked"}[k] }

// rotationPlan is one rotation's timeline.
type rotationPlan struct {
	client, oldKey, newKey int
	kind                   rotationKind
	started, deadline      time.Time
	// migrated is when the client's traffic moves to the new key, except its stragglers' (the
	// client's first IP, for every third rotation), which stays on the old key.
	migrated time.Time
	// finished is when the old key was retired or revoked; zero while running. Stragglers' calls
	// fail from then on (invalid_key after retirement, revoked_key after revocation).
	finished time.Time
}

// leakKeys are the keys (3, 13, 23, ...; none of them rotates) that the last rows of every
// chunk put on a foreign network in the last hour.
const leakKeys = 10

// newPopulation lays out keys/4 clients and one rotation per 20 keys: 60% running (deadline in
// the next 1–72 hours, traffic moving to the new key half way there), 30% retired and 10%
// revoked in the last 1–72 hours. Everything is a function of the index: the same flags give the
// same population.
func newPopulation(keys int, now time.Time) population {
	p := population{keys: keys, clients: keys / 4, now: now}
	hour := time.Hour
	for i := range p.clients / 5 {
		r := rotationPlan{client: 5 * i, oldKey: 5 * i, newKey: 5*i + p.clients}
		jitter := time.Duration(i*13%60) * time.Minute
		switch {
		case i%10 < 6:
			r.kind = running
			r.started = now.Add(-24*hour - time.Duration(i*7%168)*hour - jitter)
			r.deadline = now.Add(time.Duration(1+i%72) * hour)
			r.migrated = r.started.Add(r.deadline.Sub(r.started) / 2)
		case i%10 < 9:
			r.kind = retired
			r.finished = now.Add(-time.Duration(1+i*5%72)*hour - jitter)
			r.started = r.finished.Add(-7 * 24 * hour)
			r.deadline = r.finished
			r.migrated = r.started.Add(2 * 24 * hour)
		default:
			r.kind = revoked
			r.finished = now.Add(-time.Duration(1+i*5%48)*hour - jitter)
			r.started = r.finished.Add(-3 * 24 * hour)
			r.deadline = r.finished.Add(4 * 24 * hour)
			r.migrated = r.started.Add(24 * hour)
		}
		p.rotations = append(p.rotations, r)
	}
	return p
}

// counts returns how many rotations are running, retired and revoked.
func (p population) counts() [3]int {
	var n [3]int
	for _, r := range p.rotations {
		n[r.kind]++
	}
	return n
}

// unusedKeys is how many extra keys are created but never used (for the hygiene detector).
func (p population) unusedKeys() int { return p.keys / 100 }

func keyID(k int) string    { return fmt.Sprintf("kid_bench_%05d", k) }
func clientID(j int) string { return fmt.Sprintf("client_bench_%04d", j) }

// lifecycleEvent is one row of key_lifecycle_events.
type lifecycleEvent struct {
	ts                       time.Time
	typ, key, client, newKey string
	graceUntil               *time.Time
	reason                   string
}

// lifecycleEvents returns the key lifecycle history: key.created for every key (31–105 days ago,
// or at the rotation's start for a rotation's new key), then each rotation's start and, for a
// finished one, its retirement or revocation.
func (p population) lifecycleEvents() []lifecycleEvent {
	introducedBy := map[int]rotationPlan{}
	for _, r := range p.rotations {
		introducedBy[r.newKey] = r
	}
	var out []lifecycleEvent
	for k := range p.keys + p.unusedKeys() {
		created := p.now.Add(-time.Duration(31+k*37%75) * 24 * time.Hour)
		if r, ok := introducedBy[k]; ok {
			created = r.started
		}
		out = append(out, lifecycleEvent{ts: created, typ: "key.created", key: keyID(k), client: clientID(k % p.clients), reason: "bench"})
	}
	for _, r := range p.rotations {
		deadline := r.deadline
		out = append(out, lifecycleEvent{ts: r.started, typ: "key.rotation_started", key: keyID(r.oldKey),
			client: clientID(r.client), newKey: keyID(r.newKey), graceUntil: &deadline, reason: "scheduled rotation"})
		switch r.kind {
		case retired:
			out = append(out, lifecycleEvent{ts: r.finished, typ: "key.retired", key: keyID(r.oldKey), client: clientID(r.client), reason: "grace period over"})
		case revoked:
			out = append(out, lifecycleEvent{ts: r.finished, typ: "key.revoked", key: keyID(r.oldKey), client: clientID(r.client), reason: "suspected leak"})
		}
	}
	return out
}

// rotationArrays are the per-rotation parameters of generateEvents, indexed by rotation:
// migrated and finished as Unix seconds (finished 0 while running), and the outcome of a call
// with the old key once the rotation finished.
func (p population) rotationArrays() (migrated, finished []int64, failOutcome []string) {
	for _, r := range p.rotations {
		migrated = append(migrated, r.migrated.Unix())
		var fin int64
		if !r.finished.IsZero() {
			fin = r.finished.Unix()
		}
		finished = append(finished, fin)
		failOutcome = append(failOutcome, map[rotationKind]string{running: "", retired: "invalid_key", revoked: "revoked_key"}[r.kind])
	}
	return migrated, finished, failOutcome
}
