package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

// TestNoEventLostOrDuplicatedAcrossCrashesAndOutages runs `keywatch run` as a process over
// 500,000 events, SIGKILLs it at five random points while it ingests and restarts it each time,
// then stops ClickHouse for 30 s while it ingests. Every valid event must be stored exactly once,
// every malformed one dead-lettered exactly once, and every rollup must agree with the raw rows.
func TestNoEventLostOrDuplicatedAcrossCrashesAndOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute")
	}
	ctx := context.Background()
	dir := t.TempDir()
	server := startFaultClickHouse(t, filepath.Join(dir, "clickhouse"))
	const topic, partitions = "auth-events", 4
	broker, err := testbed.StartKafka(partitions, topic, "key-lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	cfgPath := filepath.Join(dir, "keywatch.yaml")
	os.WriteFile(cfgPath, fmt.Appendf(nil, `
kafka:
  brokers: [%q]
  session_timeout: 6s
clickhouse:
  addr: [%q]
  database: fault
ingest:
  batch_max_rows: 5000
  batch_max_wait: 100ms
http:
  listen: ""
`, broker.Brokers[0], server.addr()), 0o600)

	// Events r-0 ... r-499999; every 200th is malformed.
	const first, total = 300_000, 500_000
	var wantValid, wantSum, wantDead uint64
	events := make([][]byte, total)
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := range total {
		if i%200 == 13 {
			events[i] = fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","status":"bad-%d"}`, base, i%97, i)
			wantDead++
			continue
		}
		events[i] = fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","client_id":"c%d","status":%d,"ip":"198.51.100.%d","request_id":"r-%d"}`,
			base+int64(i), i%97, i%13, []int{200, 200, 200, 401, 429, 200, 200, 403}[i%8], i%250, i)
		wantValid++
		wantSum += uint64(i)
	}
	if err := broker.Produce(ctx, topic, events[:first]...); err != nil {
		t.Fatal(err)
	}

	conn := server.conn(t)
	stored := func() uint64 {
		var n uint64
		_ = conn.QueryRow(ctx, "SELECT count() FROM fault.auth_events").Scan(&n)
		return n
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for kill := 1; kill <= 5; kill++ {
		kw := startKeywatch(t, cfgPath)
		before := stored()
		// A restart waits for the killed member's session (kafka.session_timeout) to expire.
		waitUntilFor(t, fmt.Sprintf("progress before kill %d", kill), 2*time.Minute, func() bool { return stored() > before })
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		kw.kill()
		t.Logf("kill %d: SIGKILL with %d of %d events stored", kill, stored(), first)
	}

	kw := startKeywatch(t, cfgPath)
	var produced sync.WaitGroup
	produced.Add(1)
	go func() {
		defer produced.Done()
		if err := broker.Produce(ctx, topic, events[first:]...); err != nil {
			t.Error(err)
		}
	}()
	waitWhileProgressing(t, "ingest of the second part", 2*time.Minute, func() (bool, string) {
		n := stored()
		return n > first-first/4, fmt.Sprintf("%d of %d events stored", n, wantValid)
	}, kw)
	server.outage(30 * time.Second)
	produced.Wait()
	// How long the drain takes depends on how busy the machine is; what must hold is that it
	// keeps going until everything is stored and committed.
	waitWhileProgressing(t, "every event stored and every offset committed", 2*time.Minute, func() (bool, string) {
		n, lag := stored(), committedLag(broker, "keywatch", topic, partitions)
		return n == wantValid && lag == 0, fmt.Sprintf("%d of %d events stored, committed offsets %d behind", n, wantValid, lag)
	}, kw)
	if out, err := kw.stop(); err != nil {
		t.Fatalf("keywatch run after SIGTERM: %v\n%s", err, out)
	}

	var count, distinct, sum, dead, deadDistinct uint64
	q := `SELECT count(), uniqExact(request_id), sum(toUInt64(substring(request_id, 3))) FROM fault.auth_events`
	if err := conn.QueryRow(ctx, q).Scan(&count, &distinct, &sum); err != nil {
		t.Fatal(err)
	}
	if count != wantValid || distinct != wantValid || sum != wantSum {
		t.Errorf("auth_events: %d rows, %d distinct request ids, checksum %d; want %d, %d, %d", count, distinct, sum, wantValid, wantValid, wantSum)
	}
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(partition, offset) FROM fault.dead_letters").Scan(&dead, &deadDistinct); err != nil {
		t.Fatal(err)
	}
	if dead != wantDead || deadDistinct != wantDead {
		t.Errorf("dead_letters: %d rows for %d offsets, want %d", dead, deadDistinct, wantDead)
	}
	// Every rollup must equal, group by group and value by value, what ClickHouse's own views
	// build from the stored raw rows.
	if err := conn.Exec(ctx, "CREATE DATABASE fault_views"); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.ClickHouse.Addr = []string{server.addr()}
	if _, err := schema.Migrate(ctx, cfg.ClickHouse, "fault_views", schema.RetentionFrom(cfg.Retention)); err != nil {
		t.Fatal(err)
	}
	views := server.server.Conn(t, "fault_views")
	if err := ingest.CreateRollupViews(ctx, views); err != nil {
		t.Fatal(err)
	}
	if err := views.Exec(ctx, "INSERT INTO fault_views.auth_events SELECT * FROM fault.auth_events"); err != nil {
		t.Fatal(err)
	}
	cmp, err := ingest.CompareRollups(ctx, conn, "fault", "fault_views")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmp {
		if c.DifferentCells || c.GroupsA == 0 && c.Table != "key_fingerprints" { // the events carry no raw key
			t.Errorf("%s disagrees with auth_events: %d groups, %d from the raw rows; %d and %d without an equal in the other",
				c.Table, c.GroupsA, c.GroupsB, c.OnlyA, c.OnlyB)
		}
	}
}

// faultClickHouse is the fault test's own ClickHouse server, which the test stops for an outage.
type faultClickHouse struct {
	t      *testing.T
	opts   testbed.ClickHouseOptions
	server *testbed.ClickHouse
}

func startFaultClickHouse(t *testing.T, dir string) *faultClickHouse {
	s := &faultClickHouse{t: t, opts: testbed.ClickHouseOptions{Dir: dir}}
	s.server = s.start()
	s.opts.TCPPort, s.opts.HTTPPort = portOf(s.server.Addr), portOf(s.server.HTTPAddr)
	t.Cleanup(func() { s.server.Stop() })
	return s
}

func (s *faultClickHouse) start() *testbed.ClickHouse {
	server, err := testbed.StartClickHouse(context.Background(), s.opts)
	if err != nil {
		s.t.Fatal(err)
	}
	return server
}

func (s *faultClickHouse) addr() string { return s.server.Addr }

// conn returns a connection that outlives restarts (the ports stay the same).
func (s *faultClickHouse) conn(t *testing.T) driver.Conn { return s.server.Conn(t, "default") }

// outage stops the server for d, then starts it again on the same ports and data.
func (s *faultClickHouse) outage(d time.Duration) {
	s.server.Stop()
	s.t.Logf("clickhouse stopped for %s", d)
	time.Sleep(d)
	s.server = s.start()
}

// committedLag is the group's lag on topic, or -1 when the broker does not answer.
func committedLag(k *testbed.Kafka, group, topic string, partitions int) int64 {
	lag, err := k.CommittedLag(context.Background(), group, topic, partitions)
	if err != nil {
		return -1
	}
	return lag
}

func portOf(addr string) int {
	var port int
	fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &port)
	return port
}

// waitWhileProgressing waits until check says done, failing only when what it reports has not
// changed for stall: a slow machine slows the drain, a stuck one stops it.
func waitWhileProgressing(t *testing.T, what string, stall time.Duration, check func() (done bool, state string), p *process) {
	t.Helper()
	last, since := "", time.Now()
	for {
		done, state := check()
		if done {
			return
		}
		if state != last {
			last, since = state, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("waiting for %s: no progress for %s at %s; keywatch's log ends:\n%s", what, stall, state, tail(p.output(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
