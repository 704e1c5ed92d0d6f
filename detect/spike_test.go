package detect

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/finding"
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
