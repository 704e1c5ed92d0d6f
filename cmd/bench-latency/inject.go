package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// kind is what an injection makes happen, named after the detector that should announce it.
type kind int

const (
	kindLeak kind = iota
	kindLingering
	kindSpike
)

var kinds = []kind{kindLeak, kindLingering, kindSpike}

func (k kind) detector() string { return [...]string{"leak", "lingering", "spike"}[k] }

// What each injection writes, sized against the detectors' defaults (docs/detection.md).
const (
	// leakBurst requests from as many addresses of a foreign network and country: the leak
	// detector counts a new place once it carried min_requests (10) since first seen; 15 leaves
	// a margin and is what a scripted test of a stolen key sends in a second.
	leakBurst = 15
	// spikeBurst failed requests on the new key right after the rotation started: the spike
	// detector wants min_failures (5) and a 5% rate in windows that start at the step's minute,
	// which holds up to a minute (~60 requests) of the client's successes from before the step.
	spikeBurst = 30
	// stragglerCalls successful requests of the lingering caller on the old key after the
	// rotation started: one is enough for the lingering detector; a job makes a few.
	stragglerCalls = 3
	// lingeringGrace is the grace period of a lingering injection's rotation: within
	// detect.lingering.critical_before (1 h), so the straggler is critical at once, and within
	// info_before (72 h), so the rotation is watched.
	lingeringGrace = 30 * time.Minute
	// spikeGrace is the grace period of a spike injection's rotation: beyond info_before (72 h),
	// so only the spike detector judges it.
	spikeGrace = 7 * 24 * time.Hour
)

// subject states: what its own traffic does.
const (
	stateBefore int32 = iota // calls its old key as usual
	statePaused              // sends nothing while its injection's events are written
	stateAfter               // after the injection: the rotated client's traffic, or the leaked key's owner as before
)

// subject is one injection's client with its own keys and its own steady traffic (part of the
// background load), so that a Slack message naming its key belongs to it alone.
type subject struct {
	kind     kind
	n        int
	clientID string
	oldKey   string // the key used before the injection (the leaked key, or the rotation's old key)
	newKey   string // the rotation's new key; empty for a leak
	gateway  string
	ips      []string // the client's app servers
	agent    string
	// The lingering caller: a job of the client that stays on the old key.
	stragglerIP, stragglerUA string
	foreign                  network // where a leaked key is used from

	state atomic.Int32
}

// newSubjects returns n subjects of each kind; their keys are named after kind and number, with a
// fixed width so that no key id is a prefix of another.
func newSubjects(seed uint64, n int) []*subject {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var out []*subject
	for i := range n {
		for _, k := range kinds {
			home := homeNetworks[r.IntN(len(homeNetworks))]
			s := &subject{
				kind: k, n: i,
				clientID: fmt.Sprintf("%s-%s-%03d", companies[r.IntN(len(companies))], k.detector(), i),
				oldKey:   fmt.Sprintf("kid_live_%s_%03d_a", k.detector(), i),
				gateway:  gateways[r.IntN(len(gateways))],
				agent:    userAgents[r.IntN(4)], // an SDK
			}
			for range 2 + r.IntN(3) {
				s.ips = append(s.ips, randomAddr(r, home))
			}
			switch k {
			case kindLeak:
				s.foreign = foreignNetworks[i%len(foreignNetworks)]
			case kindLingering:
				s.newKey = fmt.Sprintf("kid_live_%s_%03d_b", k.detector(), i)
				s.stragglerIP, s.stragglerUA = randomAddr(r, home), "nightly-export/0.9 python-requests/2.31.0"
			case kindSpike:
				s.newKey = fmt.Sprintf("kid_live_%s_%03d_b", k.detector(), i)
			}
			out = append(out, s)
		}
	}
	return out
}

// requests are the subject's own requests at ts, by its state: zero to two (one a second on
// average when called every second).
func (s *subject) requests(r *rand.Rand, ts time.Time, ids *requestIDs) []request {
	state := s.state.Load()
	if state == statePaused {
		return nil
	}
	var out []request
	for range r.IntN(3) {
		rt := routes[r.IntN(4)]
		q := request{
			ts: ts, keyID: s.oldKey, clientID: s.clientID, status: 200, outcome: "ok",
			ip: s.ips[r.IntN(len(s.ips))], userAgent: s.agent, method: rt.method, route: rt.route,
			reqID: ids.next(), gateway: s.gateway, latencyMS: 5 + r.IntN(60),
		}
		if r.IntN(100) == 0 { // the usual stray failure
			q.status, q.outcome = 429, "rate_limited"
		}
		straggler := s.kind == kindLingering && r.IntN(3) == 0
		if straggler {
			q.ip, q.userAgent, q.route = s.stragglerIP, s.stragglerUA, "/v1/reports/usage/daily"
		}
		if state == stateAfter {
			switch {
			case s.kind == kindLingering && !straggler:
				q.keyID = s.newKey
			case s.kind == kindSpike:
				q.keyID, q.status, q.outcome = s.newKey, 401, "invalid_key"
			}
		}
		out = append(out, q)
	}
	return out
}

// injection is one injected incident and when it was written.
type injection struct {
	subject *subject
	// detectable is when the last event the detector needs was handed to the Kafka producer.
	detectable time.Time
}

// events returns what injecting writes at now: lifecycle events (to the lifecycle topic), then
// authentication events (to the auth topic), the last of which makes the incident detectable.
func (s *subject) events(r *rand.Rand, now time.Time, ids *requestIDs) (lifecycle [][]byte, auth []request) {
	switch s.kind {
	case kindLeak:
		seen := map[string]bool{}
		for len(auth) < leakBurst {
			ip := randomAddr(r, s.foreign)
			if seen[ip] {
				continue
			}
			seen[ip] = true
			auth = append(auth, request{
				ts: now, keyID: s.oldKey, clientID: s.clientID, status: 200, outcome: "ok",
				ip: ip, userAgent: "python-requests/2.31.0",
				method: "GET", route: "/v1/customers/{customer_id}", reqID: ids.next(), gateway: "edge-us-1", latencyMS: 30 + r.IntN(90),
			})
		}
	case kindLingering:
		lifecycle = append(lifecycle, rotationStarted(s, now, lingeringGrace))
		for range stragglerCalls {
			auth = append(auth, request{
				ts: now.Add(time.Millisecond), keyID: s.oldKey, clientID: s.clientID, status: 200, outcome: "ok",
				ip: s.stragglerIP, userAgent: s.stragglerUA, method: "GET", route: "/v1/reports/usage/daily",
				reqID: ids.next(), gateway: s.gateway, latencyMS: 40 + r.IntN(100),
			})
		}
	case kindSpike:
		lifecycle = append(lifecycle, rotationStarted(s, now, spikeGrace))
		for range spikeBurst {
			rt := routes[r.IntN(4)]
			auth = append(auth, request{
				ts: now.Add(time.Millisecond), keyID: s.newKey, clientID: s.clientID, status: 401, outcome: "invalid_key",
				ip: s.ips[r.IntN(len(s.ips))], userAgent: s.agent, method: rt.method, route: rt.route,
				reqID: ids.next(), gateway: s.gateway, latencyMS: 1 + r.IntN(5),
			})
		}
	}
	return lifecycle, auth
}

// rotationStarted is the lifecycle event of s's rotation from its old to its new key (contract 3.2).
func rotationStarted(s *subject, at time.Time, grace time.Duration) []byte {
	return mustJSON(map[string]any{
		"ts": at.UTC().Format(time.RFC3339Nano), "type": "key.rotation_started", "key_id": s.oldKey, "client_id": s.clientID,
		"new_key_id": s.newKey, "grace_until": at.Add(grace).UTC().Format(time.RFC3339), "reason": "scheduled rotation",
	})
}

// keyCreated is the lifecycle event of a key's creation.
func keyCreated(keyID, clientID string, at time.Time) []byte {
	return mustJSON(map[string]any{"ts": at.UTC().Format(time.RFC3339), "type": "key.created", "key_id": keyID, "client_id": clientID})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings are marshalled
	}
	return b
}
