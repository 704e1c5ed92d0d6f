// Package simulate owns simulated gateway traffic for the demo and benchmarks: clients with keys,
// a realistic mix of outcomes, days of history, and the demo's four stories on a script (a rotation
// that completes cleanly, one with a straggler, a revocation that breaks a client, a leaked key used
// from a new network), malformed messages. It does not own where the messages go (a kafka-go
// writer) nor what reads them.
package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/ingest"
)

// Rotation is one rotation the simulated traffic goes through.
type Rotation struct {
	ClientID, OldKeyID, NewKeyID string
	Started, GraceUntil          time.Time
	// MoveFor is how long the client takes to move its traffic to the new key once the rotation
	// started (0: it stays on the old key).
	MoveFor time.Duration
	// StragglerIP and StragglerUA, when set, are the caller that never moves to the new key.
	StragglerIP, StragglerUA string
}

type client struct {
	id      string
	keys    []string      // key ids; the first is the one in use
	age     time.Duration // how long before the simulation its keys were created
	secrets []string      // raw API keys, for clients whose gateway logs api_key instead of key_id
	ips     []string
	ua      string
	weight  float64
}

// Incidents are what goes wrong during the simulation.
type Incidents struct {
	// Revoked is the rotation (started two days before the simulation) whose old key is revoked at
	// RevokedAt while its client still uses it: from then on all its requests fail.
	Revoked   Rotation
	RevokedAt time.Time
	// LeakedKeyID is used from LeakFrom on by someone else, from a network and country it never
	// used: LeakBurst requests from as many addresses at once, then LeakPerSecond requests a second.
	LeakedKeyID, LeakClientID string
	LeakFrom                  time.Time
	LeakBurst                 int
	LeakPerSecond             float64
}

// Script is when the demo's four stories happen, as offsets from the start of live traffic (Run).
type Script struct {
	// CleanAt: a rotation starts that completes cleanly; its client moves within CleanMoveFor.
	CleanAt, CleanMoveFor time.Duration
	// LingerAt: a rotation starts whose client moves within LingerMoveFor, except one nightly job
	// that stays on the old key.
	LingerAt, LingerMoveFor time.Duration
	// RevokeAt: a key is revoked while its client still uses it.
	RevokeAt time.Duration
	// LeakAt: a key is used from a network and country it never used, LeakBurst addresses at once,
	// then LeakPerSecond requests a second.
	LeakAt        time.Duration
	LeakBurst     int
	LeakPerSecond float64
}

// DefaultScript is the demo's timing: normal use for 12 seconds, then a story every 30 seconds.
func DefaultScript() Script {
	return Script{
		CleanAt: 12 * time.Second, CleanMoveFor: 15 * time.Second,
		LingerAt: 42 * time.Second, LingerMoveFor: 10 * time.Second,
		RevokeAt: 72 * time.Second,
		LeakAt:   102 * time.Second, LeakBurst: 30, LeakPerSecond: 1,
	}
}

// The stories, in the order they happen.
const (
	StoryCleanRotation = 1 + iota
	StoryLingering
	StoryRevokedInUse
	StoryLeak
)

// StepKind is what happened in a story's step.
type StepKind string

// The steps Run reports.
const (
	StepRotationStarted StepKind = "rotation_started" // a key.rotation_started event was written
	StepMoved           StepKind = "moved"            // the client's traffic is on the new key (but a straggler's)
	StepRevoked         StepKind = "revoked"          // a key.revoked event was written
	StepLeak            StepKind = "leak"             // the leaked key's first requests were written
)

// Step is one step of a story, reported by Run right after its events were written.
type Step struct {
	Story    int
	Kind     StepKind
	At       time.Time
	Rotation Rotation // the story's rotation (stories 1 to 3)
}

// Traffic generates authentication and lifecycle events. It is not safe for concurrent use.
type Traffic struct {
	rng       *rand.Rand
	clients   []client
	cum       []float64
	start     time.Time // the end of history
	script    Script
	clean     Rotation // story 1
	rotation  Rotation // story 2
	incidents Incidents
	seq       int
	leakIP    int
}

var (
	companies = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne"}
	apps      = []string{"billing", "checkout", "mobile", "reports", "sync"}
	routes    = []struct{ method, route string }{
		{"GET", "/v1/prices"}, {"GET", "/v1/prices/{id}"}, {"POST", "/v1/orders"}, {"GET", "/v1/orders/{id}"},
		{"GET", "/v1/accounts/{id}"}, {"POST", "/v1/trades"}, {"GET", "/v1/reports"},
	}
	agents   = []string{"acme-sdk/2.1", "python-requests/2.32", "okhttp/4.12", "Go-http-client/2.0", "curl/8.5", "node-fetch/3.3", "java-sdk/5.0"}
	gateways = []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-ap-1"}
)

// New returns traffic for 40 clients with the default script. History ends at start; the stories'
// times are set when Run starts the live traffic.
func New(seed uint64, start time.Time) *Traffic { return NewScripted(seed, start, DefaultScript()) }

// NewScripted is New with the stories at the script's times.
func NewScripted(seed uint64, start time.Time, script Script) *Traffic {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t := &Traffic{rng: rng, start: start, script: script}
	var weights []float64
	for i := range 40 {
		c := client{
			id:     fmt.Sprintf("%s-%s", companies[i%len(companies)], apps[(i/len(companies))%len(apps)]),
			ua:     agents[rng.IntN(len(agents))],
			weight: 1 / math.Pow(float64(i+1), 0.8), // a few busy clients, a long tail of quiet ones
		}
		c.keys = []string{fmt.Sprintf("kid_live_%08x", rng.Uint32())}
		if i%13 == 7 { // a spare key nobody uses (key hygiene: unused)
			c.keys = append(c.keys, fmt.Sprintf("kid_live_%08x", rng.Uint32()))
		}
		c.age = 45 * 24 * time.Hour
		if i%17 == 9 { // never rotated (key hygiene: older than the rotation policy)
			c.age = 200 * 24 * time.Hour
		}
		if i%8 == 5 { // this gateway logs the raw key; keywatch stores only its fingerprint
			c.secrets = []string{fmt.Sprintf("sk_live_%016x%016x", rng.Uint64(), rng.Uint64())}
		}
		for range 1 + rng.IntN(3) {
			c.ips = append(c.ips, randomIP(rng))
		}
		weights = append(weights, c.weight)
		t.clients = append(t.clients, c)
	}
	t.cum = Cumulative(weights)
	acme := &t.clients[0] // acme-billing, the busiest client
	acme.keys = []string{"kid_live_acme_old", "kid_live_acme_new"}
	acme.secrets = nil
	t.rotation = Rotation{
		ClientID: acme.id, OldKeyID: "kid_live_acme_old", NewKeyID: "kid_live_acme_new", MoveFor: script.LingerMoveFor,
		StragglerIP: "198.51.100.77", StragglerUA: "acme-nightly-export/0.9",
	}
	umbrella := &t.clients[3] // umbrella-billing
	umbrella.keys = []string{"kid_live_umbrella_old", "kid_live_umbrella_new"}
	umbrella.secrets = nil
	t.clean = Rotation{ClientID: umbrella.id, OldKeyID: umbrella.keys[0], NewKeyID: umbrella.keys[1], MoveFor: script.CleanMoveFor}
	globex := &t.clients[1]
	globex.keys = []string{"kid_live_globex_old", "kid_live_globex_new"}
	globex.secrets = nil
	leaked := &t.clients[2]
	leaked.secrets = nil
	t.incidents = Incidents{
		Revoked: Rotation{
			ClientID: globex.id, OldKeyID: globex.keys[0], NewKeyID: globex.keys[1],
			Started: start.Add(-48 * time.Hour), GraceUntil: start.Add(5 * 24 * time.Hour),
		},
		LeakedKeyID: leaked.keys[0], LeakClientID: leaked.id,
		LeakBurst: script.LeakBurst, LeakPerSecond: script.LeakPerSecond,
	}
	t.schedule(start)
	return t
}

// schedule sets the stories' times from live, when live traffic starts.
func (t *Traffic) schedule(live time.Time) {
	s := t.script
	t.clean.Started = live.Add(s.CleanAt)
	t.clean.GraceUntil = t.clean.Started.Add(7 * 24 * time.Hour) // far off: no lingering alert while it moves
	t.rotation.Started = live.Add(s.LingerAt)
	t.rotation.GraceUntil = t.rotation.Started.Add(30 * time.Minute) // close: lingering is critical
	t.incidents.RevokedAt = live.Add(s.RevokeAt)
	t.incidents.LeakFrom = live.Add(s.LeakAt)
}

// Incidents returns what goes wrong during the simulation (times are final once Run started).
func (t *Traffic) Incidents() Incidents { return t.incidents }

// Rotation returns the rotation with a straggler (story 2).
func (t *Traffic) Rotation() Rotation { return t.rotation }

// CleanRotation returns the rotation that completes cleanly (story 1).
func (t *Traffic) CleanRotation() Rotation { return t.clean }

func randomIP(rng *rand.Rand) string {
	if rng.IntN(10) == 0 {
		return fmt.Sprintf("2001:db8:%x:%x::%x", rng.IntN(0xffff), rng.IntN(0xffff), 1+rng.IntN(0xfff))
	}
	nets := []string{"203.0.113", "198.51.100", "192.0.2", "100.64.12", "100.64.77"}
	return fmt.Sprintf("%s.%d", nets[rng.IntN(len(nets))], 1+rng.IntN(254))
}

// LifecycleEvents returns the key lifecycle before the simulation (contract 3.2): every key's
// creation and the rotation whose key is revoked later. The other rotations start during Run.
func (t *Traffic) LifecycleEvents() [][]byte {
	var out [][]byte
	for _, c := range t.clients {
		created := t.start.Add(-c.age)
		for _, k := range c.keys {
			if k == t.rotation.NewKeyID || k == t.clean.NewKeyID || k == t.incidents.Revoked.NewKeyID {
				continue // created by its rotation
			}
			out = append(out, mustJSON(map[string]any{"ts": created.Format(time.RFC3339), "type": "key.created", "key_id": k, "client_id": c.id}))
		}
	}
	return append(out, rotationStarted(t.incidents.Revoked))
}

func rotationStarted(r Rotation) []byte {
	return mustJSON(map[string]any{
		"ts": r.Started.Format(time.RFC3339Nano), "type": "key.rotation_started", "key_id": r.OldKeyID, "client_id": r.ClientID,
		"new_key_id": r.NewKeyID, "grace_until": r.GraceUntil.Format(time.RFC3339), "reason": "scheduled rotation",
	})
}

// Retired is the lifecycle event of a rotation's old key being retired at at.
func Retired(r Rotation, at time.Time) []byte {
	return mustJSON(map[string]any{
		"ts": at.UTC().Format(time.RFC3339Nano), "type": "key.retired", "key_id": r.OldKeyID, "client_id": r.ClientID,
		"reason": "rotation complete: no caller left on the old key",
	})
}

// revocation is the lifecycle event of the early revocation.
func (t *Traffic) revocation() []byte {
	in := t.incidents
	return mustJSON(map[string]any{
		"ts": in.RevokedAt.Format(time.RFC3339Nano), "type": "key.revoked", "key_id": in.Revoked.OldKeyID,
		"client_id": in.Revoked.ClientID, "reason": "revoked by mistake before the client moved",
	})
}

// leakEvent is one request with the leaked key from somewhere it never was. The burst's requests
// come from distinct addresses.
func (t *Traffic) leakEvent(now time.Time, burst bool) []byte {
	t.seq++
	in := t.incidents
	ip := 1 + t.rng.IntN(254)
	if burst {
		t.leakIP++
		ip = 1 + (t.leakIP-1)%254
	}
	return mustJSON(map[string]any{
		"ts": now.UTC().Format(time.RFC3339Nano), "key_id": in.LeakedKeyID, "client_id": in.LeakClientID,
		"ip": fmt.Sprintf("45.134.140.%d", ip), "user_agent": "python-requests/2.31",
		"method": "GET", "route": "/v1/accounts/{id}", "request_id": fmt.Sprintf("req-%d-%08x", t.seq, t.rng.Uint32()),
		"gateway": "edge-us-1", "status": 200,
	})
}

// AuthEvent returns one authentication event at now (contract 3.1), or, about once in 500, a
// malformed message of the kinds gateways really emit.
func (t *Traffic) AuthEvent(now time.Time) []byte {
	t.seq++
	rng := t.rng
	if rng.IntN(500) == 0 {
		switch rng.IntN(3) {
		case 0:
			return []byte(`{"ts":"` + now.Format(time.RFC3339Nano) + `","key_id":"kid_live_trunc`) // cut off
		case 1:
			return mustJSON(map[string]any{"key_id": "kid_live_nots", "status": 200}) // no timestamp
		default:
			return mustJSON(map[string]any{"ts": now.UnixMilli(), "key_id": "kid_live_x", "status": "OK"}) // wrong type
		}
	}
	ci := t.pickClient()
	c := &t.clients[ci]
	rt := routes[rng.IntN(len(routes))]
	ev := map[string]any{
		"ts": now.UTC().Format(time.RFC3339Nano), "client_id": c.id, "ip": c.ips[rng.IntN(len(c.ips))], "user_agent": c.ua,
		"method": rt.method, "route": rt.route, "request_id": fmt.Sprintf("req-%d-%08x", t.seq, rng.Uint32()),
		"gateway": gateways[rng.IntN(len(gateways))],
	}
	if len(c.secrets) > 0 {
		ev["api_key"] = c.secrets[0]
	} else {
		ev["key_id"] = c.keys[0]
	}
	switch c.id {
	case t.rotation.ClientID:
		t.rotate(t.rotation, ev, now)
	case t.clean.ClientID:
		t.rotate(t.clean, ev, now)
	}
	status := 200
	switch p := rng.Float64(); {
	case p < 0.012:
		status = 429
	case p < 0.018:
		status = 401
		delete(ev, "client_id") // an unknown key resolves to no client
		delete(ev, "api_key")
		ev["key_id"] = fmt.Sprintf("kid_live_%08x", rng.Uint32())
	case p < 0.021:
		status = 403
	case p < 0.024:
		status = 502
	case p < 0.1:
		status = 201
	}
	ev["status"] = status
	if rng.IntN(3) == 0 { // some gateways log the outcome themselves
		ev["outcome"] = string(ingest.OutcomeFromStatus(status))
	}
	if in := t.incidents; ci == 1 && !in.RevokedAt.IsZero() && !now.Before(in.RevokedAt) && ev["key_id"] == in.Revoked.OldKeyID {
		ev["status"], ev["outcome"] = 401, "revoked_key"
	}
	return mustJSON(ev)
}

// rotate moves a rotating client's traffic to the new key over r.MoveFor from the rotation's start,
// except for the straggler (one request in 40), which stays on the old key.
func (t *Traffic) rotate(r Rotation, ev map[string]any, now time.Time) {
	if r.StragglerIP != "" && t.rng.IntN(40) == 0 {
		ev["ip"], ev["user_agent"], ev["key_id"] = r.StragglerIP, r.StragglerUA, r.OldKeyID
		return
	}
	moved := 0.0
	if !r.Started.IsZero() && !now.Before(r.Started) {
		moved = 1
		if r.MoveFor > 0 {
			moved = min(1, now.Sub(r.Started).Seconds()/r.MoveFor.Seconds())
		}
	}
	if t.rng.Float64() < moved {
		ev["key_id"] = r.NewKeyID
	} else {
		ev["key_id"] = r.OldKeyID
	}
}

func (t *Traffic) pickClient() int { return Pick(t.rng, t.cum) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Writer is where simulated messages go; *kafka.Writer is one.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// History writes perMinute authentication events a minute, with event times over the span
// before the simulation's start, to authTopic: the baseline detectors compare the present with.
func (t *Traffic) History(ctx context.Context, w Writer, authTopic string, span time.Duration, perMinute int) (int, error) {
	start := t.start
	step := time.Minute / time.Duration(perMinute)
	msgs := make([]kafka.Message, 0, 1000)
	n := 0
	for ts := start.Add(-span); ts.Before(start); ts = ts.Add(step) {
		msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.AuthEvent(ts)})
		if len(msgs) == cap(msgs) || !ts.Add(step).Before(start) {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return n, fmt.Errorf("simulate: write history: %w", err)
			}
			n += len(msgs)
			msgs = msgs[:0]
		}
	}
	return n, nil
}

// Run writes the lifecycle events to lifecycleTopic, then rate authentication events per second
// to authTopic until ctx ends, with the script's stories at their times from now on. sent is called
// with the number of events after every write, step (when not nil) after each story step.
func (t *Traffic) Run(ctx context.Context, w Writer, authTopic, lifecycleTopic string, rate int, sent func(int), step func(Step)) error {
	var lc []kafka.Message
	for _, v := range t.LifecycleEvents() {
		lc = append(lc, kafka.Message{Topic: lifecycleTopic, Value: v})
	}
	if err := w.WriteMessages(ctx, lc...); err != nil {
		return fmt.Errorf("simulate: write lifecycle events: %w", err)
	}
	live := time.Now()
	t.schedule(live)
	if step == nil {
		step = func(Step) {}
	}
	in := t.incidents
	type due struct {
		at        time.Time
		story     int
		kind      StepKind
		rotation  Rotation
		lifecycle []byte
	}
	steps := []due{
		{t.clean.Started, StoryCleanRotation, StepRotationStarted, t.clean, rotationStarted(t.clean)},
		{t.clean.Started.Add(t.clean.MoveFor), StoryCleanRotation, StepMoved, t.clean, nil},
		{t.rotation.Started, StoryLingering, StepRotationStarted, t.rotation, rotationStarted(t.rotation)},
		{t.rotation.Started.Add(t.rotation.MoveFor), StoryLingering, StepMoved, t.rotation, nil},
		{in.RevokedAt, StoryRevokedInUse, StepRevoked, in.Revoked, t.revocation()},
		{in.LeakFrom, StoryLeak, StepLeak, Rotation{}, nil},
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	leakOwed := 0.0
	const tick = 50 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	perTick := float64(rate) * tick.Seconds()
	owed := 0.0
	msgs := make([]kafka.Message, 0, int(perTick)+1)
	write := func(now time.Time) error {
		for ; owed >= 1; owed-- {
			msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.AuthEvent(now)})
		}
		if len(msgs) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("simulate: write %d auth events: %w", len(msgs), err)
		}
		sent(len(msgs))
		msgs = msgs[:0]
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			owed += perTick
			var done []due
			for len(steps) > 0 && !now.Before(steps[0].at) {
				s := steps[0]
				steps = steps[1:]
				if s.lifecycle != nil {
					if err := w.WriteMessages(ctx, kafka.Message{Topic: lifecycleTopic, Value: s.lifecycle}); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						return fmt.Errorf("simulate: write %s event of %s: %w", s.kind, s.rotation.OldKeyID, err)
					}
				}
				if s.kind == StepLeak {
					for range in.LeakBurst {
						msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.leakEvent(now, true)})
					}
				}
				done = append(done, s)
			}
			if !now.Before(in.LeakFrom) {
				for leakOwed += in.LeakPerSecond * tick.Seconds(); leakOwed >= 1; leakOwed-- {
					msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.leakEvent(now, false)})
				}
			}
			if err := write(now); err != nil {
				return err
			}
			for _, s := range done {
				step(Step{Story: s.story, Kind: s.kind, At: s.at, Rotation: s.rotation})
			}
		}
	}
}
