package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

func chConfig(t testing.TB) config.ClickHouse {
	c := config.Default().ClickHouse
	c.Addr = []string{ch.Addr(t)}
	return c
}

func TestMigrateTwiceIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := ch.NewDatabase(t)
	r := Retention{AuthEventsDays: 90, RollupsDays: 400, DeadLettersDays: 30}

	first, err := Migrate(ctx, chConfig(t), db, r)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := Migrations(r)
	if len(first.Versions) != len(all) || len(first.RetentionChanged) != 0 {
		t.Fatalf("first run applied %v, changed retention of %v; want all %d migrations and no retention change", first.Versions, first.RetentionChanged, len(all))
	}
	second, err := Migrate(ctx, chConfig(t), db, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Versions) != 0 || len(second.RetentionChanged) != 0 {
		t.Fatalf("second run did %+v; want nothing", second)
	}

	conn := ch.Conn(t, db)
	var tables []string
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		tables = append(tables, n)
	}
	want := []string{"auth_events", "auth_events_1m", "auth_events_1m_mv", "dead_letters", "detector_runs", "findings",
		"ingest_progress", "ingest_progress_auth_events_mv", "ingest_progress_dead_letters_mv", "ingest_progress_key_lifecycle_events_mv",
		"key_callers_1h", "key_callers_1h_mv", "key_lifecycle", "key_lifecycle_events", "key_usage", "key_usage_mv", "keywatch_migrations"}
	for _, w := range want {
		if !slices.Contains(tables, w) {
			t.Fatalf("tables = %v, missing %s", tables, w)
		}
	}
	var recorded uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM keywatch_migrations").Scan(&recorded); err != nil || int(recorded) != len(all) {
		t.Fatalf("keywatch_migrations holds %d rows (%v), want %d", recorded, err, len(all))
	}
}

func TestMigrateBringsRetentionInLine(t *testing.T) {
	ctx := context.Background()
	db := ch.NewDatabase(t)
	if _, err := Migrate(ctx, chConfig(t), db, Retention{AuthEventsDays: 90, RollupsDays: 400, DeadLettersDays: 30}); err != nil {
		t.Fatal(err)
	}
	got, err := Migrate(ctx, chConfig(t), db, Retention{AuthEventsDays: 7, RollupsDays: 400, DeadLettersDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RetentionChanged, []string{"auth_events"}) {
		t.Fatalf("retention changed on %v, want [auth_events]", got.RetentionChanged)
	}
	again, err := Migrate(ctx, chConfig(t), db, Retention{AuthEventsDays: 7, RollupsDays: 400, DeadLettersDays: 30})
	if err != nil || len(again.RetentionChanged) != 0 {
		t.Fatalf("third run changed %v (%v), want nothing", again.RetentionChanged, err)
	}
}

func TestRollupCountsRequestsAndDistinctIPs(t *testing.T) {
	ctx := context.Background()
	db := ch.NewDatabase(t)
	if _, err := Migrate(ctx, chConfig(t), db, RetentionFrom(config.Default().Retention)); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	base := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO auth_events (ts, key_id, client_id, outcome, status, ip)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		ip := []string{"203.0.113.7", "203.0.113.8", "2001:db8::1"}[i%3]
		if err := batch.Append(base.Add(time.Duration(i)*time.Second), "kid_a", "acme", "ok", uint16(200), ip); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	var requests, ips uint64
	err = conn.QueryRow(ctx, "SELECT sum(requests), uniqMerge(distinct_ips) FROM auth_events_1m WHERE key_id = 'kid_a'").Scan(&requests, &ips)
	if err != nil || requests != 6 || ips != 3 {
		t.Fatalf("rollup: %d requests from %d IPs (%v), want 6 from 3", requests, ips, err)
	}
}
