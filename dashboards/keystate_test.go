package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/rotation"
)

// keyStateScenario is a fleet of keys whose lifecycle covers every rule of rotation.Build; the
// events are stored in an order other than their event time.
func keyStateScenario() []rotation.Event {
	t0 := now.Add(-30 * 24 * time.Hour)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	ev := func(at time.Time, typ, key, client string) rotation.Event {
		return rotation.Event{TS: at, Type: typ, KeyID: key, ClientID: client}
	}
	start := func(at time.Time, key, client, next string, grace time.Time) rotation.Event {
		return rotation.Event{TS: at, Type: rotation.KeyRotationStarted, KeyID: key, ClientID: client, NewKeyID: next, GraceUntil: grace, Reason: "scheduled"}
	}
	return []rotation.Event{
		// created only: active.
		ev(h(0), rotation.KeyCreated, "k-created", "acme"),
		// a running rotation with a successor and a grace deadline: the old key retiring, the new active.
		ev(h(0), rotation.KeyCreated, "k-run-old", "acme"),
		start(h(10), "k-run-old", "acme", "k-run-new", h(100)),
		ev(h(11), rotation.KeyCreated, "k-run-new", "acme"),
		// retired at the end of its rotation; the successor has no event of its own.
		ev(h(0), rotation.KeyCreated, "k-ret-old", "globex"),
		start(h(20), "k-ret-old", "globex", "k-ret-new", h(30)),
		ev(h(30), rotation.KeyRetired, "k-ret-old", "globex"),
		// revoked without a rotation.
		ev(h(0), rotation.KeyCreated, "k-rev", "globex"),
		rotation.Event{TS: h(5), Type: rotation.KeyRevoked, KeyID: "k-rev", ClientID: "globex", Reason: "leaked"},
		// rotated twice, A → B → C: A retired, B retiring, C active.
		ev(h(0), rotation.KeyCreated, "k-a", "initech"),
		start(h(10), "k-a", "initech", "k-b", h(20)),
		ev(h(20), rotation.KeyRetired, "k-a", "initech"),
		start(h(40), "k-b", "initech", "k-c", h(60)),
		// a retirement stored before the events that precede it; a rotation started after the key
		// was retired: the key stays retired; a revocation followed by a retirement: the key stays
		// revoked.
		ev(h(50), rotation.KeyRetired, "k-late", "umbrella"),
		ev(h(0), rotation.KeyCreated, "k-late", "umbrella"),
		start(h(40), "k-late", "umbrella", "k-late-new", time.Time{}),
		ev(h(0), rotation.KeyCreated, "k-ret-first", "umbrella"),
		ev(h(10), rotation.KeyRetired, "k-ret-first", "umbrella"),
		start(h(20), "k-ret-first", "umbrella", "k-ret-first-new", h(40)),
		ev(h(0), rotation.KeyCreated, "k-rev-ret", "umbrella"),
		ev(h(10), rotation.KeyRevoked, "k-rev-ret", "umbrella"),
		ev(h(20), rotation.KeyRetired, "k-rev-ret", "umbrella"),
		// a key.created restating metadata after its rotation started: still retiring.
		ev(h(0), rotation.KeyCreated, "k-restated", "hooli"),
		start(h(10), "k-restated", "hooli", "k-restated-new", h(90)),
		{TS: h(12), Type: rotation.KeyCreated, KeyID: "k-restated", ClientID: "hooli", Version: "2"},
		// created and retired at the same instant, stored retired first: retired.
		ev(h(7), rotation.KeyRetired, "k-same-ts", "hooli"),
		ev(h(7), rotation.KeyCreated, "k-same-ts", "hooli"),
		// a rotation started again with a later deadline: the grace period is extended; the start
		// carries no client, which the old key's events give to the rotation and the successor.
		ev(h(0), rotation.KeyCreated, "k-ext", "stark"),
		start(h(10), "k-ext", "", "k-ext-new", h(30)),
		start(h(20), "k-ext", "", "k-ext-new", h(50)),
		// a repeated delivery counts once.
		ev(h(3), rotation.KeyRevoked, "k-dup", "stark"),
		ev(h(3), rotation.KeyRevoked, "k-dup", "stark"),
	}
}

// insertLifecycle stores evs in the order given, as ingest does.
func insertLifecycle(t *testing.T, conn driver.Conn, evs []rotation.Event) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset, version)`)
	if err != nil {
		t.Fatal(err)
	}
	null := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	for i, e := range evs {
		if err := b.Append(e.TS, e.Type, e.KeyID, e.ClientID, e.NewKeyID, null(e.GraceUntil), e.Reason, "key-lifecycle", int32(0), int64(i), e.Version); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// panelRows runs the query of the panel titled title in file and returns its rows.
func panelRows(t *testing.T, conn driver.Conn, file, title string) [][]string {
	t.Helper()
	raw, err := fs.ReadFile(Files, file)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if p.Title != title {
			continue
		}
		q, err := expandMacros(p.Targets[0].RawSQL, timeRange{from: now.Add(-6 * time.Hour), to: now, interval: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		_, rows, err := query(context.Background(), conn, q)
		if err != nil {
			t.Fatalf("%s/%s: %v\n%s", file, title, err, q)
		}
		return rows
	}
	t.Fatalf("%s has no panel %q", file, title)
	return nil
}

// cell formats a time as query does: a NULL for the zero time.
func cell(t time.Time) string {
	if t.IsZero() {
		return "<nil>"
	}
	return fmt.Sprint(t.UTC())
}

// checkKeyStates compares what the rotation overview shows of every key (Key states, Keys by
// state, Rotations in flight) with the model keywatch readiness and the detectors judge by
// (rotation.Load, which folds the stored events with rotation.Build).
func checkKeyStates(t *testing.T, conn driver.Conn) {
	t.Helper()
	m, err := rotation.Load(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	counts := map[string]int{}
	var inFlight [][]string
	for _, k := range m.SortedKeys() {
		rot, grace := "", time.Time{}
		if k.Rotation != nil {
			rot, grace = k.Rotation.ID, k.Rotation.Deadline
		}
		want[k.ID] = []string{k.ID, k.ClientID, string(k.State), cell(k.Updated), rot, cell(grace)}
		counts[string(k.State)]++
		if k.State == rotation.Retiring {
			inFlight = append(inFlight, []string{k.Rotation.ID, k.Rotation.ClientID, cell(k.Rotation.Started), cell(k.Rotation.Deadline)})
		}
	}

	got := map[string][]string{}
	for _, r := range panelRows(t, conn, "rotation-overview.json", "Key states") {
		got[r[0]] = r
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if g := got[id]; !slices.Equal(g, want[id]) {
			t.Errorf("Key states shows %s as %v; readiness's model: %v", id, g, want[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		if want[id] == nil {
			t.Errorf("Key states shows %v, a key the model does not have", got[id])
		}
	}

	gotCounts := map[string]int{}
	for _, r := range panelRows(t, conn, "rotation-overview.json", "Keys by state") {
		var n int
		if _, err := fmt.Sscan(r[1], &n); err != nil {
			t.Fatalf("Keys by state: row %v: %v", r, err)
		}
		gotCounts[r[0]] = n
	}
	if !maps.Equal(gotCounts, counts) {
		t.Errorf("Keys by state shows %v; readiness's model: %v", gotCounts, counts)
	}

	var gotFlight [][]string
	for _, r := range panelRows(t, conn, "rotation-overview.json", "Rotations in flight") {
		gotFlight = append(gotFlight, r[:4])
	}
	slices.SortFunc(gotFlight, slices.Compare[[]string])
	slices.SortFunc(inFlight, slices.Compare[[]string])
	if !slices.EqualFunc(gotFlight, inFlight, slices.Equal) {
		t.Errorf("Rotations in flight shows\n%v\nreadiness's model:\n%v", gotFlight, inFlight)
	}
}

// TestKeyStateMatchesReadiness: on a fleet covering created, rotation_started with successor and
// grace, retired, revoked, a key rotated twice and events out of order, the rotation overview
// shows every key in the state (and rotation, deadline and client) that rotation.Build gives it.
func TestKeyStateMatchesReadiness(t *testing.T) {
	_, conn := schematest.NewDatabase(t, ch)
	insertLifecycle(t, conn, keyStateScenario())
	checkKeyStates(t, conn)
}

// randomFleets returns the lifecycle events of n independent fleets of four keys (ids prefixed
// f<i>-), each a random mix of the four types over few instants, so that ties, repeats,
// rotations in chains and in circles, late events and missing deadlines all occur. With
// anonymous, some events state no client.
func randomFleets(seed uint64, n int, anonymous bool) []rotation.Event {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t0 := now.Add(-10 * 24 * time.Hour)
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	clients := []string{"acme", "globex"}
	if anonymous {
		clients = append(clients, "", "")
	}
	var evs []rotation.Event
	for f := range n {
		key := func() string { return fmt.Sprintf("f%d-%s", f, pick("a", "b", "c", "d")) }
		for range 2 + rnd.IntN(10) {
			e := rotation.Event{TS: t0.Add(time.Duration(rnd.IntN(5)) * time.Hour), KeyID: key(), ClientID: pick(clients...),
				Type: pick(rotation.KeyCreated, rotation.KeyRotationStarted, rotation.KeyRotationStarted, rotation.KeyRetired, rotation.KeyRevoked)}
			if e.Type == rotation.KeyRotationStarted {
				e.NewKeyID = key()
				if g := rnd.IntN(4); g > 0 {
					e.GraceUntil = t0.Add(time.Duration(24*g) * time.Hour)
				}
			}
			evs = append(evs, e)
			if rnd.IntN(6) == 0 {
				evs = append(evs, e) // delivered twice
			}
		}
	}
	rnd.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs
}

// TestKeyLifecycleViewFollowsBuild: on random fleets, every column of the key_lifecycle view is
// what rotation.Build says of the key. The clients are compared where every event states one
// (see the view's definition for how a client is inherited otherwise).
func TestKeyLifecycleViewFollowsBuild(t *testing.T) {
	for _, anonymous := range []bool{false, true} {
		t.Run(fmt.Sprintf("anonymous=%v", anonymous), func(t *testing.T) {
			_, conn := schematest.NewDatabase(t, ch)
			insertLifecycle(t, conn, randomFleets(1, 300, anonymous))
			m, err := rotation.Load(context.Background(), conn)
			if err != nil {
				t.Fatal(err)
			}
			_, rows, err := query(context.Background(), conn, `SELECT key_id, client_id, rotation_client_id, toString(state), created_at,
	updated_at, rotation_id, new_key_id, rotation_started_at, grace_until FROM key_lifecycle ORDER BY key_id`)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, r := range rows {
				got[r[0]] = r
			}
			if len(got) != len(m.Keys) {
				t.Errorf("the view has %d keys, the model %d", len(got), len(m.Keys))
			}
			for _, k := range m.SortedKeys() {
				want := []string{k.ID, k.ClientID, "", string(k.State), cell(k.Created), cell(k.Updated), "", "", "<nil>", "<nil>"}
				if r := k.Rotation; r != nil {
					want[2], want[6], want[7], want[8], want[9] = r.ClientID, r.ID, r.NewKeyID, cell(r.Started), cell(r.Deadline)
				}
				g := got[k.ID]
				if anonymous && g != nil {
					g = slices.Clone(g)
					g[1], g[2], want[1], want[2] = "", "", "", ""
				}
				if !slices.Equal(g, want) {
					t.Errorf("key_lifecycle has\n%v\nrotation.Build:\n%v", g, want)
				}
			}
		})
	}
}
