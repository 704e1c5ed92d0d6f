package schema

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

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
	want := []string{"auth_events", "key_minutes", "key_minutes_mv", "dead_letters", "detector_runs", "findings",
		"ingest_progress", "ingest_progress_auth_events_mv", "ingest_progress_dead_letters_mv", "ingest_progress_key_lifecycle_events_mv",
		"key_caller_hours", "key_caller_hours_in", "key_caller_hours_mv", "key_caller_hours_progress_mv", "key_lifecycle", "key_lifecycle_events", "key_usage", "key_usage_mv", "keywatch_migrations",
		"key_refusals_1h", "key_refusals_1h_in", "key_refusals_1h_mv", "key_refusals_1h_progress_mv"}
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

// TestRollupInputFillsRollupAndProgress: an insert into a rollup's input table puts its
// aggregated rows into the rollup and its progress rows into ingest_progress, never into the rollup.
func TestRollupInputFillsRollupAndProgress(t *testing.T) {
	ctx := context.Background()
	db := ch.NewDatabase(t)
	if _, err := Migrate(ctx, chConfig(t), db, RetentionFrom(config.Default().Retention)); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	hour := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	if err := insertIPHours(ctx, conn, hour, "kid_a", 42); err != nil {
		t.Fatal(err)
	}
	var ips, rows uint64
	err := conn.QueryRow(ctx, "SELECT uniqMerge(distinct_ips), count() FROM key_ips_1h").Scan(&ips, &rows)
	if err != nil || ips != 3 || rows != 1 {
		t.Fatalf("key_ips_1h: %d rows, %d distinct addresses (%v), want 1 row of 3", rows, ips, err)
	}
	var offset int64
	if err := conn.QueryRow(ctx, "SELECT max(max_offset) FROM ingest_progress WHERE table = 'key_ips_1h' AND topic = 'auth-events' AND partition = 3").Scan(&offset); err != nil || offset != 42 {
		t.Fatalf("ingest_progress of key_ips_1h: %d (%v), want 42", offset, err)
	}
}

// insertIPHours inserts into key_ips_1h_in one row of key with three addresses in hour, and the
// progress row of offset 42 of partition 3 of auth-events.
func insertIPHours(ctx context.Context, conn driver.Conn, hour time.Time, key string, offset int64) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO key_ips_1h_in (key_id, hour, ips, progress_topic, progress_partition, progress_offset)")
	if err != nil {
		return err
	}
	if err := batch.Append(key, hour, []string{"203.0.113.7", "203.0.113.8", "2001:db8::1"}, "", int32(0), int64(-1)); err != nil {
		return err
	}
	if err := batch.Append("", hour, []string{}, "auth-events", int32(3), offset); err != nil {
		return err
	}
	return batch.Send()
}
