package schema

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

func TestClusterRewrite(t *testing.T) {
	mode := clusterMode{name: "kw", db: "keywatch"}
	known := []string{"CREATE TABLE IF NOT EXISTS auth_events (ts DateTime, key_id String) ENGINE = MergeTree ORDER BY (key_id, ts)"}
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"replacing keeps its version column", `CREATE TABLE IF NOT EXISTS alerts
(
    fingerprint String,
    state       Enum8('pending' = 1, 'firing' = 2),
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY fingerprint
SETTINGS non_replicated_deduplication_window = 10000`, []string{
			`CREATE TABLE IF NOT EXISTS alerts_local ON CLUSTER ` + "`kw`" + `
(
    fingerprint String,
    state       Enum8('pending' = 1, 'firing' = 2),
    version     UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/keywatch/alerts_local', '{replica}', version)
ORDER BY fingerprint
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000`,
			"CREATE TABLE IF NOT EXISTS alerts ON CLUSTER `kw` AS alerts_local\nENGINE = Distributed('kw', 'keywatch', 'alerts_local', cityHash64(fingerprint))",
		}},
		{"plain engine, sharded by the leading ORDER BY column", `CREATE TABLE t (a UInt8, b String) ENGINE = AggregatingMergeTree PARTITION BY a ORDER BY (b, a) TTL a`, []string{
			"CREATE TABLE t_local ON CLUSTER `kw`\n(a UInt8, b String)\nENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/keywatch/t_local', '{replica}') PARTITION BY a ORDER BY (b, a) TTL a",
			"CREATE TABLE t ON CLUSTER `kw` AS t_local\nENGINE = Distributed('kw', 'keywatch', 't_local', cityHash64(b))",
		}},
		{"view reads and writes local tables, also in subqueries", `CREATE MATERIALIZED VIEW IF NOT EXISTS v TO auth_events AS
SELECT key_id FROM (SELECT key_id FROM auth_events) JOIN system.one ON 1 GROUP BY key_id`, []string{
			"CREATE MATERIALIZED VIEW IF NOT EXISTS v ON CLUSTER `kw` TO auth_events_local AS SELECT key_id FROM (SELECT key_id FROM auth_events_local) JOIN system.one ON 1 GROUP BY key_id",
		}},
		{"column changes go to both tables", `ALTER TABLE auth_events ADD COLUMN IF NOT EXISTS asn UInt32 AFTER ts`, []string{
			"ALTER TABLE auth_events_local ON CLUSTER `kw` ADD COLUMN IF NOT EXISTS asn UInt32 AFTER ts",
			"ALTER TABLE auth_events ON CLUSTER `kw` ADD COLUMN IF NOT EXISTS asn UInt32 AFTER ts",
		}},
		{"a dropped column leaves the Distributed table first", `ALTER TABLE auth_events DROP COLUMN IF EXISTS asn`, []string{
			"ALTER TABLE auth_events ON CLUSTER `kw` DROP COLUMN IF EXISTS asn",
			"ALTER TABLE auth_events_local ON CLUSTER `kw` DROP COLUMN IF EXISTS asn",
		}},
		{"TTL and mutations only on the local table", `ALTER TABLE auth_events MODIFY TTL toDateTime(ts) + toIntervalDay(7)`, []string{
			"ALTER TABLE auth_events_local ON CLUSTER `kw` MODIFY TTL toDateTime(ts) + toIntervalDay(7)",
		}},
		{"a view's new query reads local tables", `ALTER TABLE v MODIFY QUERY SELECT key_id FROM auth_events`, []string{
			"ALTER TABLE v ON CLUSTER `kw` MODIFY QUERY SELECT key_id FROM auth_events_local",
		}},
		{"backfill runs once through the Distributed tables", `INSERT INTO auth_events SELECT * FROM auth_events WHERE 0`, []string{
			`INSERT INTO auth_events SELECT * FROM auth_events WHERE 0`,
		}},
		{"drop both", `DROP TABLE IF EXISTS auth_events SYNC`, []string{
			"DROP TABLE IF EXISTS auth_events ON CLUSTER `kw` SYNC",
			"DROP TABLE IF EXISTS auth_events_local ON CLUSTER `kw` SYNC",
		}},
		{"placeholder", `SELECT 1`, []string{`SELECT 1`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rw := newClusterRewriter(mode)
			for _, k := range known {
				if _, err := rw.rewrite(k); err != nil {
					t.Fatal(err)
				}
			}
			got, err := rw.rewrite(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("rewrite:\n%s\nwant:\n%s", strings.Join(got, "\n;\n"), strings.Join(c.want, "\n;\n"))
			}
		})
	}
	for _, bad := range []string{
		"CREATE TABLE m (a UInt8) ENGINE = Memory",
		"CREATE TABLE s (a UInt8) ENGINE = MergeTree ORDER BY tuple()",
		"CREATE MATERIALIZED VIEW v ENGINE = MergeTree ORDER BY a AS SELECT 1 AS a",
		"RENAME TABLE auth_events TO x",
	} {
		if got, err := newClusterRewriter(mode).rewrite(bad); err == nil {
			t.Errorf("rewrite(%q) = %q, want an error", bad, got)
		}
	}
	if got, _ := newClusterRewriter(clusterMode{}).rewrite(known[0]); !slices.Equal(got, known) {
		t.Errorf("without a cluster the statement changed: %q", got)
	}
}

var (
	reCreatedTable = regexp.MustCompile(`^CREATE TABLE (?:IF NOT EXISTS )?(\w+) ON CLUSTER ` + "`kw`")
	reFromAny      = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+(\w+)`)
)

// TestClusterRewritesEveryMigration rewrites the real migrations (and the bookkeeping table) for a
// cluster, checks the shape of every statement and has the server parse each one, ON CLUSTER and
// Replicated engines included.
func TestClusterRewritesEveryMigration(t *testing.T) {
	ctx := context.Background()
	migrations, err := Migrations(RetentionFrom(config.Default().Retention))
	if err != nil {
		t.Fatal(err)
	}
	rw := newClusterRewriter(clusterMode{name: "kw", db: "keywatch"})
	bookkeeping, err := rw.rewrite(createMigrationsTable)
	if err != nil {
		t.Fatal(err)
	}
	perMigration, err := clusterStatements(migrations, rw)
	if err != nil {
		t.Fatal(err)
	}
	all := bookkeeping
	for _, m := range perMigration {
		for _, run := range m {
			all = append(all, run...)
		}
	}
	locals, distributed := map[string]bool{}, map[string]bool{}
	for _, stmt := range all {
		switch {
		case reRunOnce.MatchString(stmt):
			continue
		case !strings.Contains(stmt, " ON CLUSTER `kw`"):
			t.Errorf("not ON CLUSTER: %s", stmt)
		}
		if g := reCreatedTable.FindStringSubmatch(stmt); g != nil {
			if base, ok := strings.CutSuffix(g[1], localSuffix); ok {
				input := strings.HasSuffix(strings.TrimSpace(stmt), "ENGINE = Null") // an input table stores nothing
				if !input && !strings.Contains(stmt, "ENGINE = Replicated") || !input && !strings.Contains(stmt, "'/clickhouse/tables/{shard}/keywatch/"+g[1]+"', '{replica}'") {
					t.Errorf("%s is not replicated with a {shard}/{replica} path: %s", g[1], stmt)
				}
				locals[base] = true
			} else if strings.Contains(stmt, "ENGINE = Distributed('kw', 'keywatch', '"+g[1]+"_local', cityHash64(") {
				distributed[g[1]] = true
			} else {
				t.Errorf("%s is neither _local nor Distributed over it: %s", g[1], stmt)
			}
		}
		if strings.HasPrefix(stmt, "CREATE MATERIALIZED VIEW") {
			for _, f := range reFromAny.FindAllStringSubmatch(stmt, -1) {
				if rw.tables[f[1]] {
					t.Errorf("view reads the Distributed table %s, not %s_local: %s", f[1], f[1], stmt)
				}
			}
			if !regexp.MustCompile(` TO \w+_local AS `).MatchString(stmt) {
				t.Errorf("view does not write a _local table: %s", stmt)
			}
		}
	}
	if len(locals) == 0 || !maps2Equal(locals, distributed) || !locals["keywatch_migrations"] || !locals["auth_events"] {
		t.Errorf("local tables %v, distributed %v: want the same, with keywatch_migrations and auth_events", locals, distributed)
	}

	conn := ch.Conn(t, "default")
	for _, stmt := range all {
		var formatted string
		if err := conn.QueryRow(ctx, "SELECT formatQuery(?)", stmt).Scan(&formatted); err != nil {
			t.Errorf("server cannot parse %s: %v", stmt, err)
		}
	}
}

func maps2Equal(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// startCluster starts n embedded servers that form cluster name, one shard each.
func startCluster(t *testing.T, name string, n int) []*testbed.ClickHouse {
	t.Helper()
	ports, err := testbed.FreePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	var shards []string
	for i := range n {
		shards = append(shards, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	servers := make([]*testbed.ClickHouse, n)
	for i := range n {
		s, err := testbed.StartClickHouse(context.Background(), testbed.ClickHouseOptions{
			Dir: filepath.Join(t.TempDir(), "data"), TCPPort: ports[2*i], HTTPPort: ports[2*i+1], Cluster: name, Shards: shards,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		servers[i] = s
	}
	return servers
}

// TestClusterTwoShards runs on a real two-shard cluster: two embedded servers whose remote_servers
// name both, with {shard} macros and in-memory Keepers. clickhouse-local has no DDL worker (ON
// CLUSTER fails) and no interserver port (Replicated tables stay read-only), so the full migration
// and the round trip run with each schema statement sent to both servers, as the DDL worker would,
// over unreplicated _local tables; and the Replicated _local tables are created (not written)
// with their real engines.
func TestClusterTwoShards(t *testing.T) {
	ctx := context.Background()
	servers := startCluster(t, "kw", 2)
	nodes := []string{servers[0].Addr, servers[1].Addr}
	cfg := config.Default().ClickHouse
	cfg.Addr = []string{servers[0].Addr}
	cfg.Cluster = "kw"
	r := RetentionFrom(config.Default().Retention)

	t.Run("migrate and round trip through Distributed tables", func(t *testing.T) {
		db := "t_cluster_" + strings.ReplaceAll(fmt.Sprint(time.Now().UnixNano()), "-", "")
		mode := clusterMode{name: "kw", db: db, nodes: nodes, plainEngines: true}
		first, err := migrate(ctx, cfg, db, r, mode)
		if err != nil {
			t.Fatal(err)
		}
		all, _ := Migrations(r)
		if len(first.Versions) != len(all) || len(first.RetentionChanged) != 0 {
			t.Fatalf("first run %+v, want all %d migrations and no retention change", first, len(all))
		}
		// The record of applied migrations is the cluster's: a run through the other shard finds it.
		other := cfg
		other.Addr = []string{servers[1].Addr}
		again, err := migrate(ctx, other, db, r, mode)
		if err != nil || len(again.Versions) != 0 || len(again.RetentionChanged) != 0 {
			t.Fatalf("second run, through shard 2: %+v (%v), want nothing", again, err)
		}
		conn, err := Open(cfg, db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if n, err := Shards(ctx, conn, "kw"); err != nil || n != 2 {
			t.Errorf("Shards: %d %v, want 2", n, err)
		}

		for i, s := range servers {
			engines := map[string]string{}
			rows, err := conn.Query(ctx, "SELECT name, engine FROM remote(?, system.tables) WHERE database = ?", s.Addr, db)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n, e string
				_ = rows.Scan(&n, &e)
				engines[n] = e
			}
			rows.Close()
			for _, name := range []string{"keywatch_migrations", "auth_events", "key_minutes", "key_lifecycle_events", "key_fingerprints", "alerts", "actions"} {
				if engines[name] != "Distributed" || !strings.HasSuffix(engines[name+"_local"], "MergeTree") {
					t.Errorf("shard %d: %s is %q over %q, want Distributed over a MergeTree", i+1, name, engines[name], engines[name+"_local"])
				}
			}
			if engines["key_ips_1h_in"] != "Distributed" || engines["key_ips_1h_in_local"] != "Null" {
				t.Errorf("shard %d: key_ips_1h_in is %q over %q, want Distributed over Null", i+1, engines["key_ips_1h_in"], engines["key_ips_1h_in_local"])
			}
		}
		var cols uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM clusterAllReplicas('kw', system.columns) WHERE database = ? AND table IN ('auth_events', 'auth_events_local') AND name IN ('asn', 'country', 'src_topic')", db).Scan(&cols); err != nil || cols != 12 {
			t.Errorf("ALTER ... ADD COLUMN reached %d of 12 (shard, table, column) triples (%v)", cols, err)
		}

		// Events of 20 keys through the Distributed auth_events: spread over both shards, each key
		// on one, and the views on auth_events_local roll them up where they are.
		base := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip)")
		if err != nil {
			t.Fatal(err)
		}
		for k := range 20 {
			for i := range 6 {
				ip := []string{"203.0.113.7", "203.0.113.8", "2001:db8::1"}[i%3]
				key := fmt.Sprintf("kid_%02d", k)
				if err := batch.Append(base.Add(time.Duration(i)*time.Second), key, "fp_"+key, "acme", "ok", uint16(200), ip); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}
		var onShard [2]uint64
		for i, s := range servers {
			if err := conn.QueryRow(ctx, "SELECT count() FROM remote(?, ?, 'auth_events_local')", s.Addr, db).Scan(&onShard[i]); err != nil {
				t.Fatal(err)
			}
		}
		if onShard[0] == 0 || onShard[1] == 0 || onShard[0]+onShard[1] != 120 {
			t.Fatalf("rows on the shards: %v, want 120 spread over both", onShard)
		}
		var split uint64
		if err := conn.QueryRow(ctx, "SELECT countIf(shards > 1) FROM (SELECT key_id, uniqExact(_shard_num) AS shards FROM auth_events GROUP BY key_id)").Scan(&split); err != nil || split != 0 {
			t.Fatalf("%d keys have rows on both shards (%v), want none", split, err)
		}
		// Rollup rows through the Distributed input table: each key's on the shard of its events,
		// rolled up there by the view on the Null input table.
		for k := range 20 {
			if err := insertIPHours(ctx, conn, base.Truncate(time.Hour), fmt.Sprintf("kid_%02d", k), int64(k)); err != nil {
				t.Fatal(err)
			}
		}
		var ips uint64
		err = conn.QueryRow(ctx, "SELECT uniqMerge(distinct_ips) FROM key_ips_1h WHERE key_id = 'kid_07'").Scan(&ips)
		if err != nil || ips != 3 {
			t.Fatalf("rollup through Distributed: %d IPs (%v), want 3", ips, err)
		}
		if err := conn.QueryRow(ctx, `SELECT countIf(shards > 1) FROM (
    SELECT key_id, uniqExact(shard) AS shards FROM (
        SELECT key_id, _shard_num AS shard FROM auth_events UNION ALL SELECT key_id, _shard_num AS shard FROM key_ips_1h)
    GROUP BY key_id)`).Scan(&split); err != nil || split != 0 {
			t.Fatalf("%d keys have events and rollup rows on different shards (%v), want none", split, err)
		}

		// Every key's state (the key_lifecycle view) read through the Distributed events table,
		// the keys spread over both shards.
		for k := range 20 {
			for i, event := range []string{"key.created", "key.rotation_started"} {
				if err := conn.Exec(ctx, "INSERT INTO key_lifecycle_events (ts, type, key_id, client_id) VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, 'acme')",
					base.Add(time.Duration(i)*time.Minute).UnixMilli(), event, fmt.Sprintf("kid_%02d", k)); err != nil {
					t.Fatal(err)
				}
			}
		}
		var retiring, rowsFinal uint64
		if err := conn.QueryRow(ctx, "SELECT countIf(state = 'retiring'), count() FROM key_lifecycle FINAL").Scan(&retiring, &rowsFinal); err != nil || retiring != 20 || rowsFinal != 20 {
			t.Fatalf("key_lifecycle FINAL: %d retiring of %d rows (%v), want 20 of 20", retiring, rowsFinal, err)
		}

		// IN and JOIN subqueries over Distributed tables, as the detectors write them: refused
		// across shards unless keywatch's connections make them GLOBAL.
		var joined uint64
		if err := conn.QueryRow(ctx, `SELECT count() FROM key_ips_1h AS a INNER JOIN (SELECT key_id FROM key_lifecycle FINAL) AS l ON a.key_id = l.key_id
WHERE a.key_id IN (SELECT key_id FROM key_lifecycle_events)`).Scan(&joined); err != nil || joined == 0 {
			t.Fatalf("JOIN and IN over Distributed tables: %d rows (%v)", joined, err)
		}

		// The 0011 backfill, run again on emptied targets, rebuilds them from both shards' events.
		for _, s := range servers {
			if err := s.Conn(t, db).Exec(ctx, "TRUNCATE TABLE key_fingerprints_local"); err != nil {
				t.Fatal(err)
			}
		}
		backfill := all[10].Statements[len(all[10].Statements)-1]
		if !strings.HasPrefix(backfill, "INSERT INTO key_fingerprints") {
			t.Fatalf("0011's last statement is not the backfill: %s", backfill)
		}
		if err := conn.Exec(ctx, backfill); err != nil {
			t.Fatal(err)
		}
		var fingerprints uint64
		var key string
		if err := conn.QueryRow(ctx, "SELECT count(), argMaxIf(k, fp = 'fp_kid_13', 1) FROM (SELECT key_fingerprint AS fp, argMaxMerge(key_id) AS k FROM key_fingerprints GROUP BY key_fingerprint)").Scan(&fingerprints, &key); err != nil || fingerprints != 20 || key != "kid_13" {
			t.Fatalf("backfilled %d fingerprints, fp_kid_13 -> %q (%v); want 20 and kid_13", fingerprints, key, err)
		}

		// Retention changes land on every shard's _local table, where the TTLs are.
		shorter := r
		shorter.AuthEventsDays = 7
		got, err := migrate(ctx, cfg, db, shorter, mode)
		if err != nil || !slices.Equal(got.RetentionChanged, []string{"auth_events"}) {
			t.Fatalf("retention change: %v (%v), want [auth_events]", got.RetentionChanged, err)
		}
		var ttl7 uint64
		if err := conn.QueryRow(ctx, "SELECT countIf(engine_full LIKE '%toIntervalDay(7)%') FROM clusterAllReplicas('kw', system.tables) WHERE database = ? AND name = 'auth_events_local'", db).Scan(&ttl7); err != nil || ttl7 != 2 {
			t.Fatalf("auth_events_local has the 7-day TTL on %d shards (%v), want 2", ttl7, err)
		}
		for _, s := range servers {
			if err := s.Conn(t, "default").Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
				t.Log(err)
			}
		}
	})

	t.Run("replicated tables are created with their engines", func(t *testing.T) {
		db := servers[0].NewDatabase(t)
		conn := servers[0].Conn(t, db)
		migrations, err := Migrations(r)
		if err != nil {
			t.Fatal(err)
		}
		rw := newClusterRewriter(clusterMode{name: "kw", db: db, nodes: nodes[:1]})
		bookkeeping, err := rw.rewrite(createMigrationsTable)
		if err != nil {
			t.Fatal(err)
		}
		statements, err := clusterStatements(migrations, rw)
		if err != nil {
			t.Fatal(err)
		}
		run := bookkeeping
		for _, m := range statements {
			for _, s := range m {
				for _, stmt := range s {
					// A read-only Replicated table takes no ALTER or INSERT here, and the views need the
					// ALTERs' columns: tables only.
					if strings.HasPrefix(stmt, "CREATE TABLE ") {
						run = append(run, stmt)
					}
				}
			}
		}
		for _, stmt := range run {
			if err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		var engine string
		for name, want := range map[string]string{"auth_events_local": "ReplicatedMergeTree", "alerts_local": "ReplicatedReplacingMergeTree", "auth_events_1m_local": "ReplicatedAggregatingMergeTree", "auth_events": "Distributed"} {
			if err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, name).Scan(&engine); err != nil || engine != want {
				t.Errorf("%s: engine %q (%v), want %s", name, engine, err, want)
			}
		}
		var path string
		if err := conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = 'alerts_local'", db).Scan(&path); err != nil ||
			!strings.Contains(path, "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/"+db+"/alerts_local', '{replica}', version)") {
			t.Errorf("alerts_local: %s (%v)", path, err)
		}
		if err := conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = 'actions_local'", db).Scan(&path); err != nil ||
			!strings.Contains(path, "replicated_deduplication_window = 10000") {
			t.Errorf("actions_local keeps retried inserts out for fewer than 10000 blocks: %s (%v)", path, err)
		}
	})
}
