package leader

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

// replica is one Elector running in the test, with what its lead func saw.
type replica struct {
	e      *Elector
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// board counts the replicas leading at once.
type board struct {
	mu      sync.Mutex
	now     int
	most    int
	started int
}

func (b *board) lead(ctx context.Context) error {
	b.mu.Lock()
	b.now++
	b.started++
	b.most = max(b.most, b.now)
	b.mu.Unlock()
	<-ctx.Done()
	b.mu.Lock()
	b.now--
	b.mu.Unlock()
	return nil
}

func startReplica(t *testing.T, brokers []string, name string, lead func(context.Context) error) *replica {
	t.Helper()
	return startReplicaVia(t, brokers, nil, name, lead)
}

// startReplicaVia is startReplica connecting through dialer.
func startReplicaVia(t *testing.T, brokers []string, dialer *kafkago.Dialer, name string, lead func(context.Context) error) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", name)
	e := New(Options{Brokers: brokers, Dialer: dialer, GroupID: "keywatch-leader", Topic: "keywatch-leader", SessionTimeout: 6 * time.Second, Logger: log, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{e: e, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx, lead) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leaders(rs ...*replica) (n int, which *replica) {
	for _, r := range rs {
		if r.e.IsLeader() {
			n, which = n+1, r
		}
	}
	return n, which
}

func TestOneLeaderAndTakeover(t *testing.T) {
	kafka, err := testbed.StartKafka(1) // no topic: the Elector creates it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	var b board
	a := startReplica(t, kafka.Brokers, "a", b.lead)
	c := startReplica(t, kafka.Brokers, "b", b.lead)

	var first *replica
	waitUntil(t, "one leader", time.Minute, func() bool {
		n, r := leaders(a, c)
		first = r
		return n == 1
	})
	// Let both settle into one generation with two members, then check again.
	waitUntil(t, "the second member to join", time.Minute, func() bool {
		n, r := leaders(a, c)
		b.mu.Lock()
		defer b.mu.Unlock()
		first = r
		return n == 1 && b.now == 1
	})
	time.Sleep(3 * time.Second)
	if n, _ := leaders(a, c); n != 1 {
		t.Fatalf("%d leaders", n)
	}
	other := a
	if first == a {
		other = c
	}
	if got := gauge(t, first); got != 1 {
		t.Errorf("leader's keywatch_leader = %v", got)
	}
	if got := gauge(t, other); got != 0 {
		t.Errorf("follower's keywatch_leader = %v", got)
	}

	first.cancel()
	if err := <-first.done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	first.done <- nil // for the cleanup
	if first.e.IsLeader() || gauge(t, first) != 0 {
		t.Error("a stopped replica still reports leadership")
	}
	// Session timeout plus generous slack; a clean stop leaves the group, so it is usually at once.
	waitUntil(t, "the other replica to take over", 6*time.Second+30*time.Second, other.e.IsLeader)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.most != 1 {
		t.Errorf("%d replicas led at once", b.most)
	}
}

// TestElectionOverMutualTLSAndSASL: every connection the Elector opens, the group's and the one
// creating the coordination topic, goes through the Dialer with the brokers' TLS and SASL.
func TestElectionOverMutualTLSAndSASL(t *testing.T) {
	certs, err := testbed.NewKafkaCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kafka, err := testbed.StartKafkaWith(testbed.KafkaOptions{ // no topic: the Elector creates it
		Partitions: 1, TLS: certs.ServerTLS(true),
		Users: []testbed.KafkaUser{{Mechanism: "SCRAM-SHA-512", Name: "keywatch", Password: "leader-secret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	conn, err := broker.New(config.Kafka{
		Brokers: kafka.Brokers,
		TLS:     config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: certs.CA.CertFile, CertFile: certs.Client.CertFile, KeyFile: certs.Client.KeyFile}},
		SASL:    config.SASL{Mechanism: config.SASLScramSHA512, Username: "keywatch", Password: "leader-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b board
	r := startReplicaVia(t, kafka.Brokers, conn.Dialer(), "a", b.lead)
	waitUntil(t, "the replica to lead", time.Minute, r.e.IsLeader)
}

func TestLeadErrorEndsRun(t *testing.T) {
	kafka, err := testbed.StartKafka(1, "keywatch-leader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	boom := errors.New("boom")
	r := startReplica(t, kafka.Brokers, "a", func(context.Context) error { return boom })
	select {
	case err := <-r.done:
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want boom", err)
		}
		r.done <- nil
	case <-time.After(time.Minute):
		t.Fatal("Run did not end after lead failed")
	}
}

func TestDisabledAlwaysLeads(t *testing.T) {
	e := New(Options{Disabled: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	}()
	waitUntil(t, "leading", 10*time.Second, e.IsLeader)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	if e.IsLeader() {
		t.Error("still leading after Run returned")
	}
}

// gauge reads keywatch_leader from the replica's registry.
func gauge(t *testing.T, r *replica) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keywatch_leader" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("keywatch_leader is not registered")
	return 0
}

func TestStickyBalancerKeepsTheIncumbent(t *testing.T) {
	parts := []kafkago.Partition{{Topic: "keywatch-leader", ID: 0}}
	for _, c := range []struct {
		name    string
		members []kafkago.GroupMember
		want    string
	}{
		{"lowest id without incumbent", []kafkago.GroupMember{{ID: "b", UserData: []byte{0}}, {ID: "a", UserData: []byte{0}}}, "a"},
		{"incumbent keeps it", []kafkago.GroupMember{{ID: "a", UserData: []byte{0}}, {ID: "b", UserData: []byte{1}}}, "b"},
		{"no user data", []kafkago.GroupMember{{ID: "b"}, {ID: "a"}}, "a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := stickyBalancer{}.AssignGroups(c.members, parts)
			if len(got) != 1 || len(got[c.want]["keywatch-leader"]) != 1 {
				t.Errorf("assignments %v, want all to %s", got, c.want)
			}
		})
	}
}
