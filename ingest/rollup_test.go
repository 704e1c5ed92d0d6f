package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/schema/schematest"
)

// TestRollupsMatchTheViews: the rollups ingest builds from batches equal, group by group and value
// by value, those ClickHouse's own views build from the same stored events (CreateRollupViews).
// The events cross minute, hour and day boundaries, come in many batches from every partition,
// and mix IPv4, IPv6 and missing addresses, known and unknown networks, outcomes and raw keys.
func TestRollupsMatchTheViews(t *testing.T) {
	e := newEnv(t, nil)
	e.opts.BatchMaxRows = 700                      // many batches, so rows of one group come from several inserts
	e.opts.RollupInterval = 300 * time.Millisecond // and several batches share a rollup insert
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 12, 5, 23, 58, 30, 0, time.UTC)
	ips := []string{"198.51.100.7", "198.51.100.200", "203.0.113.9", "2001:db8:1:2::7", "2001:db8:1:ffff::1", "2001:db8:2::1", "", "10.1.2.3"}
	outcomes := []string{"ok", "ok", "ok", "ok", "invalid_key", "forbidden", "rate_limited", "error", "expired_key", "revoked_key"}
	agents := []string{"sdk/1.0", "sdk/2.0", "cron/1.0", "curl/8.1", "python-requests/2.31.0", "Go-http-client/1.1", "okhttp/4.12.0"}
	const total = 6000
	var values [][]byte
	for i := range total {
		k := rng.IntN(12)
		ev := map[string]any{
			"ts":         start.Add(time.Duration(i) * 613 * time.Millisecond).Format(time.RFC3339Nano), // ~61 minutes over midnight
			"key_id":     fmt.Sprintf("kid_%02d", k),
			"client_id":  fmt.Sprintf("client_%d", k%5),
			"outcome":    outcomes[rng.IntN(len(outcomes))],
			"user_agent": agents[rng.IntN(len(agents))],
			"request_id": fmt.Sprintf("r-%d", i),
		}
		if ip := ips[rng.IntN(len(ips))]; ip != "" {
			ev["ip"] = ip
		}
		if k%4 == 0 {
			ev["api_key"] = fmt.Sprintf("sk_live_secret_value_%02d_0123456789", k+rng.IntN(2))
		}
		b, _ := json.Marshal(ev)
		values = append(values, b)
	}
	ctx := context.Background()
	if err := e.kafka.Produce(ctx, authTopic, values...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "every event stored", time.Minute, func() bool {
		return e.count(t, `SELECT count() FROM auth_events`) == total
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Every rollup records, per partition, the same progress as auth_events.
	var lagging uint64
	if err := e.conn.QueryRow(ctx, `SELECT count() FROM (
    SELECT topic, partition, uniqExact(table) AS tables, uniqExact(offset) AS offsets
    FROM (SELECT table, topic, partition, max(max_offset) AS offset FROM ingest_progress WHERE table != 'dead_letters' GROUP BY ALL)
    GROUP BY topic, partition)
WHERE tables != 8 OR offsets != 1`).Scan(&lagging); err != nil || lagging != 0 {
		t.Errorf("%d partitions whose progress differs between auth_events and the rollups (%v), want none", lagging, err)
	}

	viewsDB, viewsConn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(ctx, viewsConn); err != nil {
		t.Fatal(err)
	}
	if err := viewsConn.Exec(ctx, fmt.Sprintf("INSERT INTO auth_events SELECT * FROM `%s`.auth_events", e.db)); err != nil {
		t.Fatal(err)
	}
	cmp, err := ingest.CompareRollups(ctx, e.conn, e.db, viewsDB)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmp {
		t.Logf("%s: %d groups", c.Table, c.GroupsA)
		if c.DifferentCells || c.GroupsA == 0 {
			t.Errorf("%s: ingest built %d groups, the views %d; %d of ingest's and %d of the views' have no equal in the other",
				c.Table, c.GroupsA, c.GroupsB, c.OnlyA, c.OnlyB)
		}
	}
}
