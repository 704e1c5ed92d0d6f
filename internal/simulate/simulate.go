// Package simulate owns simulated gateway traffic for the demo and benchmarks: clients with keys,
// a realistic mix of outcomes, days of history, a rotation in progress with a straggler, an early
// revocation that breaks a client, a leaked key used from a new network, malformed messages.
// It does not own where the messages go (a kafka-go writer) nor what reads them.
package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/ingest"
)

// Rotation is the rotation the simulated traffic goes through.
type Rotation struct {
	ClientID, OldKeyID, NewKeyID string
	Started, GraceUntil          time.Time
	// Straggler is the caller that never moves to the new key.
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

// Incidents are what goes wrong during the simulation, at fixed offsets from its start.
type Incidents struct {
	// Revoked is the rotation (started two days before the simulation) whose old key is revoked at
	// RevokedAt while its client still uses it: from then on all its requests fail.
	Revoked   Rotation
	RevokedAt time.Time
	// LeakedKeyID is used from LeakFrom on by someone else, from a network and country it never
	// used, at LeakPerSecond requests per second.
	LeakedKeyID, LeakClientID string
	LeakFrom                  time.Time
	LeakPerSecond             float64
}

// Traffic generates authentication and lifecycle events. It is not safe for concurrent use.
type Traffic struct {
	rng       *rand.Rand
	clients   []client
	cum       []float64
	rotation  Rotation
	incidents Incidents
	seq       int
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

// New returns traffic for 40 clients whose one rotation (acme-billing) starts at start with a
// 30-minute grace period.
func New(seed uint64, start time.Time) *Traffic {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t := &Traffic{rng: rng}
	total := 0.0
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
		total += c.weight
		t.clients = append(t.clients, c)
	}
	for _, c := range t.clients {
		t.cum = append(t.cum, c.weight/total)
	}
	for i := 1; i < len(t.cum); i++ {
		t.cum[i] += t.cum[i-1]
	}
	acme := &t.clients[0] // acme-billing, the busiest client
	acme.keys = []string{"kid_live_acme_old", "kid_live_acme_new"}
	acme.secrets = nil
	t.rotation = Rotation{
		ClientID: acme.id, OldKeyID: "kid_live_acme_old", NewKeyID: "kid_live_acme_new",
		Started: start, GraceUntil: start.Add(30 * time.Minute),
		StragglerIP: "198.51.100.77", StragglerUA: "acme-nightly-export/0.9",
	}
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
		RevokedAt:   start.Add(time.Minute),
		LeakedKeyID: leaked.keys[0], LeakClientID: leaked.id,
		LeakFrom: start.Add(90 * time.Second), LeakPerSecond: 0.5,
	}
	return t
}

// Incidents returns what goes wrong during the simulation.
func (t *Traffic) Incidents() Incidents { return t.incidents }

// Rotation returns the rotation in progress.
func (t *Traffic) Rotation() Rotation { return t.rotation }

func randomIP(rng *rand.Rand) string {
	if rng.IntN(10) == 0 {
		return fmt.Sprintf("2001:db8:%x:%x::%x", rng.IntN(0xffff), rng.IntN(0xffff), 1+rng.IntN(0xfff))
	}
	nets := []string{"203.0.113", "198.51.100", "192.0.2", "100.64.12", "100.64.77"}
	return fmt.Sprintf("%s.%d", nets[rng.IntN(len(nets))], 1+rng.IntN(254))
}

// LifecycleEvents returns the key lifecycle before and at the start of the simulation (contract 3.2).
func (t *Traffic) LifecycleEvents() [][]byte {
	var out [][]byte
	for _, c := range t.clients {
		created := t.rotation.Started.Add(-c.age)
		for _, k := range c.keys {
			if k == t.rotation.NewKeyID || k == t.incidents.Revoked.NewKeyID {
				continue // created by its rotation
			}
			out = append(out, mustJSON(map[string]any{"ts": created.Format(time.RFC3339), "type": "key.created", "key_id": k, "client_id": c.id}))
		}
	}
	r := t.rotation
	out = append(out, mustJSON(map[string]any{
		"ts": r.Started.Format(time.RFC3339Nano), "type": "key.rotation_started", "key_id": r.OldKeyID, "client_id": r.ClientID,
		"new_key_id": r.NewKeyID, "grace_until": r.GraceUntil.Format(time.RFC3339), "reason": "scheduled rotation",
	}))
	g := t.incidents.Revoked
	out = append(out, mustJSON(map[string]any{
		"ts": g.Started.Format(time.RFC3339Nano), "type": "key.rotation_started", "key_id": g.OldKeyID, "client_id": g.ClientID,
		"new_key_id": g.NewKeyID, "grace_until": g.GraceUntil.Format(time.RFC3339), "reason": "scheduled rotation",
	}))
	return out
}

// revocation is the lifecycle event of the early revocation.
func (t *Traffic) revocation() []byte {
	in := t.incidents
	return mustJSON(map[string]any{
		"ts": in.RevokedAt.Format(time.RFC3339Nano), "type": "key.revoked", "key_id": in.Revoked.OldKeyID,
		"client_id": in.Revoked.ClientID, "reason": "revoked by mistake before the client moved",
	})
}

// leakEvent is one request with the leaked key from somewhere it never was.
func (t *Traffic) leakEvent(now time.Time) []byte {
	t.seq++
	in := t.incidents
	return mustJSON(map[string]any{
		"ts": now.UTC().Format(time.RFC3339Nano), "key_id": in.LeakedKeyID, "client_id": in.LeakClientID,
		"ip": fmt.Sprintf("45.134.140.%d", 1+t.rng.IntN(254)), "user_agent": "python-requests/2.31",
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
	if ci == 0 {
		t.rotate(ev, now)
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
	if in := t.incidents; ci == 1 && !now.Before(in.RevokedAt) && ev["key_id"] == in.Revoked.OldKeyID {
		ev["status"], ev["outcome"] = 401, "revoked_key"
	}
	return mustJSON(ev)
}

// rotate moves the rotating client's traffic to the new key over the first two minutes, except for
// one straggler that stays on the old key.
func (t *Traffic) rotate(ev map[string]any, now time.Time) {
	r := t.rotation
	if t.rng.IntN(40) == 0 {
		ev["ip"], ev["user_agent"], ev["key_id"] = r.StragglerIP, r.StragglerUA, r.OldKeyID
		return
	}
	moved := min(0.98, max(0, now.Sub(r.Started).Seconds()/120))
	if t.rng.Float64() < moved {
		ev["key_id"] = r.NewKeyID
	} else {
		ev["key_id"] = r.OldKeyID
	}
}

func (t *Traffic) pickClient() int {
	x := t.rng.Float64()
	for i, c := range t.cum {
		if x < c {
			return i
		}
	}
	return len(t.cum) - 1
}

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
	start := t.rotation.Started
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
// to authTopic until ctx ends, with the incidents at their times. sent is called with the number
// of events after every write.
func (t *Traffic) Run(ctx context.Context, w Writer, authTopic, lifecycleTopic string, rate int, sent func(int)) error {
	var lc []kafka.Message
	for _, v := range t.LifecycleEvents() {
		lc = append(lc, kafka.Message{Topic: lifecycleTopic, Value: v})
	}
	if err := w.WriteMessages(ctx, lc...); err != nil {
		return fmt.Errorf("simulate: write lifecycle events: %w", err)
	}
	revoked := false
	leakOwed := 0.0
	const tick = 50 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	perTick := float64(rate) * tick.Seconds()
	owed := 0.0
	msgs := make([]kafka.Message, 0, int(perTick)+1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			owed += perTick
			msgs = msgs[:0]
			for ; owed >= 1; owed-- {
				msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.AuthEvent(now)})
			}
			if !revoked && !now.Before(t.incidents.RevokedAt) {
				if err := w.WriteMessages(ctx, kafka.Message{Topic: lifecycleTopic, Value: t.revocation()}); err != nil {
					return fmt.Errorf("simulate: write revocation: %w", err)
				}
				revoked = true
			}
			if !now.Before(t.incidents.LeakFrom) {
				for leakOwed += t.incidents.LeakPerSecond * tick.Seconds(); leakOwed >= 1; leakOwed-- {
					msgs = append(msgs, kafka.Message{Topic: authTopic, Value: t.leakEvent(now)})
				}
			}
			if len(msgs) == 0 {
				continue
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("simulate: write %d auth events: %w", len(msgs), err)
			}
			sent(len(msgs))
		}
	}
}
