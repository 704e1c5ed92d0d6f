package detect

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/rotation"
)

// steady returns one event every interval in [from, to) made by fn from its index.
func steady(from, to time.Time, interval time.Duration, fn func(i int) event) []event {
	i := 0
	return every(from, to, interval, func(time.Time) (event, bool) {
		i++
		return fn(i - 1), true
	})
}

// rotationOf returns the lifecycle events of a rotation old → new of client, started at started,
// and, when finished is set, ended by finishType at finished.
func rotationOf(client, old, new string, started time.Time, finishType string, finished time.Time) []rotation.Event {
	evs := []rotation.Event{
		{TS: started.Add(-60 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: old, ClientID: client},
		{TS: started, Type: rotation.KeyRotationStarted, KeyID: old, ClientID: client, NewKeyID: new, GraceUntil: started.Add(24 * time.Hour)},
	}
	if finishType != "" {
		evs = append(evs, rotation.Event{TS: finished, Type: finishType, KeyID: old, ClientID: client})
	}
	return evs
}

// wantSpike is the finding expected for one client; zero counts are not checked.
type wantSpike struct {
	severity                   finding.Severity
	step                       rotation.StepKind
	longRequests, longFailures uint64
	byOutcome                  map[string]uint64
	topRoutes                  []SpikeCount
	keyless                    uint64
	keylessCallers             []string
}

func TestSpike(t *testing.T) {
	const (
		sdk  = "acme-sdk/2.1"
		ip   = "203.0.113.5"
		days = 3 * 24 * time.Hour
	)
	route := func(i int) string {
		if i%4 == 0 {
			return "/v1/orders"
		}
		return "/v1/prices"
	}
	var (
		revokedAt = now.Add(-40 * time.Minute)
		startedAt = now.Add(-50 * time.Minute)
	)
	cases := []struct {
		name      string
		lifecycle []rotation.Event
		events    []event
		want      map[string]wantSpike // by client; empty: silent
	}{{
		// acme never moved to kid_new: since the revocation every request fails. acme-reports, a
		// second client sharing the old key, is broken too.
		name:      "client broken by a revocation",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", now.Add(-3*24*time.Hour), rotation.KeyRevoked, revokedAt),
		events: slices.Concat(
			steady(now.Add(-days), revokedAt, 10*time.Second, func(i int) event {
				return event{KeyID: "kid_old", ClientID: "acme", Route: route(i)}
			}),
			steady(revokedAt, now, 10*time.Second, func(i int) event {
				return event{KeyID: "kid_old", ClientID: "acme", Outcome: "revoked_key", Route: route(i)}
			}),
			steady(now.Add(-days), revokedAt, 5*time.Second, func(int) event {
				return event{KeyID: "kid_old", ClientID: "acme-reports", Route: "/v1/reports"}
			}),
			steady(revokedAt, now, 5*time.Second, func(int) event {
				return event{KeyID: "kid_old", ClientID: "acme-reports", Outcome: "revoked_key", Route: "/v1/reports"}
			}),
		),
		want: map[string]wantSpike{
			"acme": {
				severity: finding.Critical, step: rotation.StepRevoked, longRequests: 240, longFailures: 240,
				byOutcome: map[string]uint64{"revoked_key": 240},
				topRoutes: []SpikeCount{{"/v1/prices", 180}, {"/v1/orders", 60}},
			},
			"acme-reports": {
				severity: finding.Critical, step: rotation.StepRevoked, longRequests: 480, longFailures: 480,
				byOutcome: map[string]uint64{"revoked_key": 480}, topRoutes: []SpikeCount{{"/v1/reports", 480}},
			},
		},
	}, {
		name:      "failure rate as high before the step as after",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", startedAt, "", time.Time{}),
		events: steady(now.Add(-days), now, 2*time.Second, func(i int) event {
			e := event{KeyID: "kid_old", ClientID: "acme"}
			if i%10 == 0 {
				e.Outcome = "invalid_key"
			}
			return e
		}),
	}, {
		// acme's weekly job fails half its requests at this time of the week, every week: rare over
		// the week before the step, but the same time of the week in earlier weeks says it is usual.
		name:      "weekly pattern at the same time of the week",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", startedAt, "", time.Time{}),
		events: steady(now.Add(-15*24*time.Hour), now, 10*time.Second, func(i int) event {
			e := event{KeyID: "kid_old", ClientID: "acme"}
			ts := now.Add(-15*24*time.Hour + time.Duration(i)*10*time.Second)
			for k := range 3 {
				weekAgo := now.Add(-time.Duration(k) * 7 * 24 * time.Hour)
				if i%2 == 0 && !ts.Before(weekAgo.Add(-time.Hour)) && ts.Before(weekAgo) {
					e.Outcome = "forbidden"
				}
			}
			return e
		}),
	}, {
		name:      "a few failures after the step",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", startedAt, "", time.Time{}),
		events: slices.Concat(
			steady(now.Add(-days), now, 10*time.Second, func(int) event { return event{KeyID: "kid_old", ClientID: "acme"} }),
			steady(now.Add(-5*time.Minute), now, time.Minute, func(int) event {
				return event{KeyID: "kid_new", ClientID: "acme", Outcome: "invalid_key"}
			}),
		),
	}, {
		// After the rotation started, acme's deploy sends a mangled new key: the gateway resolves
		// neither key nor client, so the failures arrive keyless through acme's usual (IP, UA).
		// Someone else's keyless failures from another address are not acme's.
		name:      "keyless failures from the client's callers",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", startedAt, "", time.Time{}),
		events: slices.Concat(
			steady(now.Add(-days), now, 10*time.Second, func(int) event {
				return event{KeyID: "kid_old", ClientID: "acme", IP: ip, UA: sdk}
			}),
			steady(startedAt, now, 20*time.Second, func(int) event {
				return event{KeyID: "fp_5eed", IP: ip, UA: sdk, Outcome: "invalid_key", Route: "/v1/orders"}
			}),
			steady(startedAt, now, 5*time.Second, func(int) event {
				return event{KeyID: "fp_0ther", IP: "192.0.2.99", UA: sdk, Outcome: "invalid_key"}
			}),
		),
		want: map[string]wantSpike{"acme": {
			severity: finding.Warning, step: rotation.StepStarted, longRequests: 300 + 150, longFailures: 150,
			byOutcome: map[string]uint64{"invalid_key": 150}, topRoutes: []SpikeCount{{"/v1/orders", 150}},
			keyless: 150, keylessCallers: []string{ip + " " + sdk},
		}},
	}, {
		name:      "step older than after_step",
		lifecycle: rotationOf("acme", "kid_old", "kid_new", now.Add(-3*24*time.Hour), rotation.KeyRevoked, now.Add(-25*time.Hour)),
		events: slices.Concat(
			steady(now.Add(-days), now.Add(-25*time.Hour), 10*time.Second, func(int) event { return event{KeyID: "kid_old", ClientID: "acme"} }),
			steady(now.Add(-25*time.Hour), now, 10*time.Second, func(int) event {
				return event{KeyID: "kid_old", ClientID: "acme", Outcome: "revoked_key"}
			}),
		),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case is a database of its own
			s := newScenario(t)
			s.lifecycle(tc.lifecycle...)
			s.events(tc.events)
			findings, err := NewSpike(s.conn, s.cfg.Spike).Detect(context.Background(), now)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]finding.Finding{}
			for _, f := range findings {
				t.Logf("%s (score %.1f): %s", f.Severity, f.Score, f.Summary)
				if _, dup := got[f.ClientID]; dup {
					t.Errorf("two findings for %s", f.ClientID)
				}
				got[f.ClientID] = f
			}
			if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tc.want))) {
				t.Fatalf("findings for %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tc.want)))
			}
			for client, w := range tc.want {
				checkSpike(t, got[client], client, w)
			}
		})
	}
}

func checkSpike(t *testing.T, f finding.Finding, client string, w wantSpike) {
	t.Helper()
	ev, ok := f.Evidence.(SpikeEvidence)
	if !ok {
		t.Fatalf("%s: evidence is %T", client, f.Evidence)
	}
	rot := rotation.ID("kid_old", "kid_new")
	if f.Detector != "spike" || f.KeyID != "kid_old" || f.RotationID != rot || ev.RotationID != rot ||
		f.Fingerprint != finding.Fingerprint("spike", "kid_old", client, rot) {
		t.Errorf("%s: identity %s/%s/%s/%s, want spike/kid_old/%s/%s", client, f.Detector, f.KeyID, f.ClientID, f.RotationID, client, rot)
	}
	if ev.RotationClient != (client == "acme") {
		t.Errorf("%s: rotation_client %v", client, ev.RotationClient)
	}
	if _, err := f.EvidenceJSON(); err != nil {
		t.Error(err)
	}
	if f.Labels[finding.LabelStep] != string(w.step) || f.Set()[finding.LabelStep] != string(w.step) {
		t.Errorf("%s: label step %q, want %q", client, f.Labels[finding.LabelStep], w.step)
	}
	if !slices.Equal(f.Fields, ev.fields()) || len(f.Fields) < 4 || f.Fields[0].Name != "Rotation" {
		t.Errorf("%s: fields %q, want those of its evidence", client, f.Fields)
	}
	if f.Severity != w.severity || ev.Step != w.step {
		t.Errorf("%s: %s after %s, want %s after %s", client, f.Severity, ev.Step, w.severity, w.step)
	}
	if f.Score != ev.Long.Z || ev.Long.Z < 4 || ev.Short.Z < 4 {
		t.Errorf("%s: score %.1f, z short %.1f long %.1f", client, f.Score, ev.Short.Z, ev.Long.Z)
	}
	if ev.Long.Requests != w.longRequests || ev.Long.Failures != w.longFailures {
		t.Errorf("%s: long window %d failures of %d requests, want %d of %d", client, ev.Long.Failures, ev.Long.Requests, w.longFailures, w.longRequests)
	}
	if ev.Baseline.Source != "before_step" || ev.Baseline.BeforeStep.Requests == 0 || ev.Baseline.BeforeStep.Failures != 0 {
		t.Errorf("%s: baseline %+v", client, ev.Baseline)
	}
	if !maps.Equal(ev.FailuresByOutcome, w.byOutcome) {
		t.Errorf("%s: failures by outcome %v, want %v", client, ev.FailuresByOutcome, w.byOutcome)
	}
	if !slices.Equal(ev.TopRoutes, w.topRoutes) {
		t.Errorf("%s: top routes %v, want %v", client, ev.TopRoutes, w.topRoutes)
	}
	var callers []string
	for _, c := range ev.Keyless.Callers {
		callers = append(callers, c.Name)
	}
	if ev.Keyless.Failures != w.keyless || !slices.Equal(callers, w.keylessCallers) {
		t.Errorf("%s: keyless %d from %v, want %d from %v", client, ev.Keyless.Failures, callers, w.keyless, w.keylessCallers)
	}
}

// TestSpikeSmallPartner: the spike floor scales with volume. tinyco makes 6 requests an hour and
// every one was refused since its old key was retired 2 hours ago (none failed before): one spike
// finding, though no window holds 20 failures and its last 10 minutes hold one request. Beside it,
// on rotations retired at the same time, two look-alikes stay silent: bigco, a big client whose
// 2% failure rate with its usual noise goes on after the step, and smallco, a small client on its
// new key with one stray 401 on the old one after the step.
func TestSpikeSmallPartner(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	retiredAt := now.Add(-2 * time.Hour)
	started := now.Add(-3 * 24 * time.Hour)
	week := 7 * 24 * time.Hour
	s.lifecycle(slices.Concat(
		rotationOf("tinyco", "kid_old", "kid_new", started, rotation.KeyRetired, retiredAt),
		rotationOf("bigco", "kid_big_old", "kid_big_new", started, rotation.KeyRetired, retiredAt),
		rotationOf("smallco", "kid_small_old", "kid_small_new", started, rotation.KeyRetired, retiredAt),
	)...)
	// A fixed generator: the same noise on every run.
	rng := rand.New(rand.NewPCG(16, 7))
	s.events(slices.Concat(
		// tinyco: every 10 minutes at :03, :13, ...: ok before the retirement, refused since (12).
		every(now.Add(-week+3*time.Minute), now, 10*time.Minute, func(ts time.Time) (event, bool) {
			e := event{KeyID: "kid_old", ClientID: "tinyco", Method: "POST", Route: "/v1/settlements"}
			if !ts.Before(retiredAt) {
				e.Outcome = "invalid_key"
			}
			return e, true
		}),
		// bigco: every 4 seconds, moved to its new key a day before the retirement; about 2% fail
		// (invalid_key), before and after.
		every(now.Add(-2*24*time.Hour), now, 4*time.Second, func(ts time.Time) (event, bool) {
			e := event{KeyID: "kid_big_old", ClientID: "bigco", IP: "192.0.2.20"}
			if ts.After(retiredAt.Add(-24 * time.Hour)) {
				e.KeyID = "kid_big_new"
			}
			if rng.Float64() < 0.02 {
				e.Outcome = "invalid_key"
			}
			return e, true
		}),
		// smallco: every 10 minutes, on its new key since the day before; one 401 on the old key
		// after the retirement (a stray cron job run).
		every(now.Add(-week+7*time.Minute), now, 10*time.Minute, func(ts time.Time) (event, bool) {
			e := event{KeyID: "kid_small_old", ClientID: "smallco", IP: "192.0.2.30"}
			if ts.After(retiredAt.Add(-24 * time.Hour)) {
				e.KeyID = "kid_small_new"
			}
			return e, true
		}),
		[]event{{TS: now.Add(-75 * time.Minute), KeyID: "kid_small_old", ClientID: "smallco", IP: "192.0.2.30", Outcome: "invalid_key"}},
	))
	findings, err := NewSpike(s.conn, s.cfg.Spike).Detect(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	var clients []string
	for _, f := range findings {
		t.Logf("%s (score %.1f): %s", f.Severity, f.Score, f.Summary)
		clients = append(clients, f.ClientID)
	}
	if !slices.Equal(clients, []string{"tinyco"}) {
		t.Fatalf("findings for %v, want one for tinyco only", clients)
	}
	f := findings[0]
	ev := f.Evidence.(SpikeEvidence)
	if f.Severity != finding.Critical || f.KeyID != "kid_old" || ev.Step != rotation.StepRetired || !ev.RotationClient {
		t.Errorf("finding %s about %s after %s, want critical about kid_old after retired", f.Severity, f.KeyID, ev.Step)
	}
	if ev.Long.Requests != 6 || ev.Long.Failures != 6 || ev.Baseline.BeforeStep.Failures != 0 || ev.Baseline.BeforeStep.Requests < 900 {
		t.Errorf("long window %d of %d, baseline %+v; want 6 of 6 against none of about 1000", ev.Long.Failures, ev.Long.Requests, ev.Baseline.BeforeStep)
	}
	if !maps.Equal(ev.FailuresByOutcome, map[string]uint64{"invalid_key": 6}) || !slices.Equal(ev.TopRoutes, []SpikeCount{{"/v1/settlements", 6}}) {
		t.Errorf("failures by outcome %v, routes %v", ev.FailuresByOutcome, ev.TopRoutes)
	}
	checkFields(t, f, ev.fields())
}

// TestSpikeP: the exact binomial tail against values worked by hand, and the floor of the judged
// windows: a thin window is carried by the window since the step unless its own requests succeed.
func TestSpikeP(t *testing.T) {
	for _, tc := range []struct {
		t    spikeTally
		p0   float64
		want float64
	}{
		{spikeTally{6, 6}, 0, 1e-18},                // 0.001^6, the rate floored
		{spikeTally{1, 1}, 0.001, 0.001},            // one request, one failure
		{spikeTally{3, 2}, 0.5, 0.5},                // (3 + 1) / 8
		{spikeTally{10, 3}, 0.1, 0.0701908264},      // 1 - P(0) - P(1) - P(2)
		{spikeTally{1000, 20}, 0.02, 1},             // no more than expected
		{spikeTally{1000, 0}, 0, 1},                 // nothing failed
		{spikeTally{100000, 3000}, 0.02, 1.27e-103}, // far above the mean of a big client
	} {
		got := spikeP(tc.t, tc.p0)
		if math.Abs(got-tc.want) > 1e-6*tc.want && !(tc.want < 1e-100 && got < 1e-95) {
			t.Errorf("P(%d of %d at %g) = %g, want %g", tc.t.failures, tc.t.requests, tc.p0, got, tc.want)
		}
	}
	if a := spikeAlpha(4); math.Abs(a-3.167e-5) > 1e-8 {
		t.Errorf("alpha of z 4 = %g", a)
	}
	d := NewSpike(nil, config.Default().Detect.Spike)
	since := spikeTally{12, 12}
	for _, tc := range []struct {
		name string
		w    spikeTally
		want bool
	}{
		{"thin and failing", spikeTally{1, 1}, true},
		{"thin and empty", spikeTally{}, true},
		{"thin and working", spikeTally{3, 0}, false},
	} {
		if got := d.rises(tc.w, since, 0, true); got != tc.want {
			t.Errorf("%s: rises %v, want %v", tc.name, got, tc.want)
		}
	}
	if d.rises(spikeTally{1, 1}, spikeTally{4, 4}, 0, true) {
		t.Error("a thin window carried by 4 failures since the step rises")
	}
}
