// Package rotation owns the rotation model: the lifecycle event (contract 3.2), the state of every
// key and the rotations between keys, folded by event time from lifecycle events. Build is the one
// authority for a key's state; the key_lifecycle view (internal/schema/migrations/0018_key_state.sql),
// which the dashboards read, implements the same rules in SQL. It does not decode or store lifecycle
// events (ingest) nor judge traffic (detect).
package rotation

import (
	"cmp"
	"slices"
	"time"
)

// State is where a key is in its life.
type State string

// The states of a key.
const (
	Active   State = "active"
	Retiring State = "retiring" // a rotation started; the key works until its grace deadline
	Retired  State = "retired"
	Revoked  State = "revoked"
)

// The lifecycle event types of contract 3.2.
const (
	KeyCreated         = "key.created"
	KeyRotationStarted = "key.rotation_started"
	KeyRetired         = "key.retired"
	KeyRevoked         = "key.revoked"
)

// Event is one lifecycle event (contract 3.2): what ingest decodes from Kafka and POST
// /v1/lifecycle and stores, and what the model is folded from.
type Event struct {
	TS         time.Time
	Type       string // KeyCreated, KeyRotationStarted, KeyRetired or KeyRevoked
	KeyID      string
	ClientID   string
	NewKeyID   string    // the successor, with KeyRotationStarted
	GraceUntil time.Time // with KeyRotationStarted, when the old key stops working; zero when absent
	Reason     string
	// Key metadata the event stated about KeyID: "", zero and nil when it said nothing. Scopes,
	// when given, are sorted and without duplicates.
	Version   string
	ExpiresAt time.Time
	Scopes    []string
}

// Key is one key's current state.
type Key struct {
	ID, ClientID string
	State        State
	Created      time.Time // zero when no key.created event was seen
	Updated      time.Time // event time of the last event that changed the key
	// Rotation is the rotation that retires this key, if one started; Predecessor is the rotation
	// that introduced it.
	Rotation, Predecessor *Rotation
	// Version, ExpiresAt and Scopes are each the latest value (by event time) that a lifecycle event
	// of this key stated; "", zero and nil when none did. A key without Scopes has unknown scopes,
	// not none.
	Version   string
	ExpiresAt time.Time
	Scopes    []string
}

// HasScope reports whether the key's known scopes include scope.
func (k *Key) HasScope(scope string) bool { return slices.Contains(k.Scopes, scope) }

// StepKind is one step of a rotation.
type StepKind string

// The steps of a rotation.
const (
	StepStarted StepKind = "started"
	StepRetired StepKind = "retired"
	StepRevoked StepKind = "revoked"
)

// Step is a rotation step and when it happened (event time).
type Step struct {
	Kind StepKind
	At   time.Time
}

// Rotation moves one client from an old key to a new one.
type Rotation struct {
	ID                           string // "old>new": stable across runs, readable in alerts
	ClientID, OldKeyID, NewKeyID string
	Started                      time.Time
	Deadline                     time.Time // the grace deadline; zero when none was given
	// Finished is when the old key was retired or revoked; zero while the rotation runs.
	Finished time.Time
	Steps    []Step
	Reason   string
}

// Running reports whether the old key has not been retired or revoked yet.
func (r *Rotation) Running() bool { return r.Finished.IsZero() }

// Model is the state of every key that has lifecycle events, and every rotation.
type Model struct {
	Keys      map[string]*Key
	Rotations []*Rotation // by start time
}

// ID returns the rotation id of old → new.
func ID(oldKeyID, newKeyID string) string { return oldKeyID + ">" + newKeyID }

// typeOrder breaks ties between events with the same timestamp in the order a key lives.
var typeOrder = map[string]int{KeyCreated: 0, KeyRotationStarted: 1, KeyRetired: 2, KeyRevoked: 3}

// Build folds events into the model in event-time order, whatever order they arrived in. A repeated
// event (same key, type and time) counts once; an event older than the key's state still adds
// its step to the history but does not move the key back. Events of the same time are taken in
// the order a key lives (created, rotation started, retired, revoked), then by key, successor,
// grace deadline and client, so that the model never depends on arrival order.
//
// Build is the authority for a key's state. The key_lifecycle view that the dashboards read
// (internal/schema/migrations/0018_key_state.sql) implements the same rules in SQL: change both
// together (the dashboards tests compare them).
func Build(events []Event) *Model {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b Event) int {
		return cmp.Or(a.TS.Compare(b.TS), cmp.Compare(typeOrder[a.Type], typeOrder[b.Type]), cmp.Compare(a.KeyID, b.KeyID),
			cmp.Compare(a.NewKeyID, b.NewKeyID), a.GraceUntil.Compare(b.GraceUntil), cmp.Compare(a.ClientID, b.ClientID))
	})
	m := &Model{Keys: map[string]*Key{}}
	byID := map[string]*Rotation{}
	key := func(id, client string) *Key {
		k := m.Keys[id]
		if k == nil {
			k = &Key{ID: id, State: Active}
			m.Keys[id] = k
		}
		if k.ClientID == "" {
			k.ClientID = client
		}
		return k
	}
	for _, e := range sorted {
		k := key(e.KeyID, e.ClientID)
		if e.Version != "" {
			k.Version = e.Version
		}
		if !e.ExpiresAt.IsZero() {
			k.ExpiresAt = e.ExpiresAt
		}
		if len(e.Scopes) > 0 {
			k.Scopes = slices.Clone(e.Scopes)
		}
		switch e.Type {
		case KeyCreated:
			if k.Created.IsZero() {
				k.Created = e.TS
			}
			if k.Updated.IsZero() {
				k.Updated = e.TS
			}
		case KeyRotationStarted:
			id := ID(e.KeyID, e.NewKeyID)
			r := byID[id]
			if r == nil {
				r = &Rotation{ID: id, ClientID: e.ClientID, OldKeyID: e.KeyID, NewKeyID: e.NewKeyID, Started: e.TS, Deadline: e.GraceUntil, Reason: e.Reason}
				if r.ClientID == "" {
					r.ClientID = k.ClientID
				}
				byID[id] = r
				m.Rotations = append(m.Rotations, r)
				r.Steps = append(r.Steps, Step{StepStarted, e.TS})
			} else if !e.GraceUntil.IsZero() {
				r.Deadline = e.GraceUntil // a repeated start with a new deadline extends the grace period
			}
			if k.State == Active {
				k.State, k.Updated = Retiring, e.TS
			}
			k.Rotation = r
			if e.NewKeyID != "" {
				nk := key(e.NewKeyID, r.ClientID)
				nk.Predecessor = r
				if nk.Created.IsZero() {
					nk.Created = e.TS
				}
				if nk.Updated.IsZero() {
					nk.Updated = e.TS
				}
			}
		case KeyRetired, KeyRevoked:
			state, step := Retired, StepRetired
			if e.Type == KeyRevoked {
				state, step = Revoked, StepRevoked
			}
			if k.State != Revoked && (k.State != state) {
				k.State, k.Updated = state, e.TS
			}
			if r := k.Rotation; r != nil && !hasStep(r, step) {
				r.Steps = append(r.Steps, Step{step, e.TS})
				if r.Finished.IsZero() {
					r.Finished = e.TS
				}
			}
		}
	}
	return m
}

func hasStep(r *Rotation, kind StepKind) bool {
	return slices.ContainsFunc(r.Steps, func(s Step) bool { return s.Kind == kind })
}

// Key returns the key with id, or nil when it has no lifecycle events.
func (m *Model) Key(id string) *Key { return m.Keys[id] }

// SortedKeys returns every key, by id.
func (m *Model) SortedKeys() []*Key {
	out := make([]*Key, 0, len(m.Keys))
	for _, k := range m.Keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *Key) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// maxSuccessors bounds Successors: a key rotated more than this many times in a row has no
// business being judged through all of them, and lifecycle events are written by other systems.
const maxSuccessors = 32

// Successors returns the keys that rotations lead to from keyID, nearest first: the new keys of
// the rotations from it, then theirs, and so on (after A → B and B → C, A's are B and C). It
// follows every rotation started from a key, not only the last, stops at a key already reached
// (a chain that rotates back to an earlier key is no cycle to follow) and at maxSuccessors keys.
// keyID itself is never among them.
func (m *Model) Successors(keyID string) []string {
	next := map[string][]string{}
	for _, r := range m.Rotations {
		if r.NewKeyID != "" {
			next[r.OldKeyID] = append(next[r.OldKeyID], r.NewKeyID)
		}
	}
	seen := map[string]bool{keyID: true}
	var out []string
	for queue := []string{keyID}; len(queue) > 0 && len(out) < maxSuccessors; queue = queue[1:] {
		for _, n := range next[queue[0]] {
			if !seen[n] && len(out) < maxSuccessors {
				seen[n] = true
				out = append(out, n)
				queue = append(queue, n)
			}
		}
	}
	return out
}
