// Package schema owns keywatch's ClickHouse schema: connecting, creating the database, and applying
// the numbered migrations in migrations/. It does not own what is written (ingest) or read (detect).
//
// Times in queries: clickhouse-go writes a time.Time argument of Exec, Query, QueryRow or Select
// into the query as toDateTime('<Unix seconds>'), which drops the milliseconds and saturates at
// 2106-02-07 06:28:15. So keywatch never binds one: it binds t.UnixMilli() and reads it with
//
//	fromUnixTimestamp64Milli(toInt64(?), 'UTC')
//
// a DateTime64(3, 'UTC') that compares exactly with DateTime64(3) columns and, like a DateTime
// literal, narrows what is read by the primary key (DateTime columns included). Batch inserts
// (PrepareBatch, Append) keep a time.Time's milliseconds and take it as it is.
// TestTimesAreBoundAsMilliseconds holds every package to this.
package schema

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/tlsconfig"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Retention is what the migrations' TTL clauses are rendered with, in whole days.
type Retention struct {
	AuthEventsDays, RollupsDays, DeadLettersDays int
}

// RetentionFrom takes the retention settings of a configuration.
func RetentionFrom(r config.Retention) Retention {
	return Retention{AuthEventsDays: r.AuthEvents.Days(), RollupsDays: r.Rollups.Days(), DeadLettersDays: r.DeadLetters.Days()}
}

// Migration is one numbered step of the schema.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns every migration in version order, rendered for r.
func Migrations(r Retention) ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("schema: migration file %q is not named NNNN_name.sql", e.Name())
		}
		raw, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("schema: read migration file %s: %w", e.Name(), err)
		}
		tmpl, err := template.New(e.Name()).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("schema: parse migration file %s: %w", e.Name(), err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, r); err != nil {
			return nil, fmt.Errorf("schema: fill in the retention of migration file %s: %w", e.Name(), err)
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, Migration{Version: v, Name: m[2], Statements: splitStatements(buf.String())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("schema: migration %04d_%s: versions must run 1, 2, 3... without gaps", out[i].Version, out[i].Name)
		}
	}
	return out, nil
}

// splitStatements cuts a migration at lines that end with ";" and drops comment-only lines.
func splitStatements(sql string) []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.SplitSeq(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// Warnings are the ClickHouse connection choices in cfg that give up on security.
func Warnings(cfg config.ClickHouse) []string {
	if !cfg.Secure {
		return nil
	}
	return tlsconfig.Warnings(cfg.TLS, "clickhouse.tls")
}

// Open connects to ClickHouse with the configured addresses and credentials, to database db.
// In cluster mode (cfg.Cluster set) its inserts into Distributed tables are synchronous
// (distributed_foreground_insert: written to the shard before the insert returns) and it prefers the
// first healthy replica of each shard for reads and writes alike (load_balancing in_order), so what
// keywatch wrote it reads back, as on a single server. An IN or JOIN subquery over a Distributed
// table runs once and is sent to the shards (distributed_product_mode global), instead of being
// refused when there are several shards.
//
// With cfg.Secure it speaks TLS, verified as cfg.TLS says.
func Open(cfg config.ClickHouse, db string) (driver.Conn, error) {
	var settings clickhouse.Settings
	if cfg.Cluster != "" {
		settings = clickhouse.Settings{"distributed_foreground_insert": 1, "load_balancing": "in_order", "distributed_product_mode": "global"}
	}
	var tlsConfig *tls.Config
	if cfg.Secure {
		var err error
		if tlsConfig, err = tlsconfig.Client(cfg.TLS, "clickhouse.tls"); err != nil {
			return nil, fmt.Errorf("schema: open clickhouse %v: %w", cfg.Addr, err)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		TLS:         tlsConfig,
		Settings:    settings,
		Addr:        cfg.Addr,
		Auth:        clickhouse.Auth{Database: db, Username: cfg.Username, Password: cfg.Password},
		DialTimeout: time.Duration(cfg.DialTimeout),
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:  clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "keywatch"}}},
	})
	if err != nil {
		return nil, fmt.Errorf("schema: open clickhouse %v: %w", cfg.Addr, err)
	}
	return conn, nil
}

const (
	createMigrationsTable = `CREATE TABLE IF NOT EXISTS keywatch_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version`
	selectApplied   = `SELECT DISTINCT version FROM keywatch_migrations`
	insertMigration = `INSERT INTO keywatch_migrations (version, name) VALUES (?, ?)`
	selectTTL       = `SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()`
)

// Applied is what one Migrate call did.
type Applied struct {
	// Versions are the migrations applied by this call, in order.
	Versions []int
	// RetentionChanged are the tables whose TTL was changed to match the configuration.
	RetentionChanged []string
}

// Migrate creates database db when it is missing and applies every migration it has not
// recorded yet; then it brings the tables' TTLs in line with r. Running it again changes nothing.
// With cfg.Cluster set, the database, the tables and the migrations bookkeeping are created ON
// CLUSTER as Replicated tables under Distributed ones of the same names (see cluster.go).
func Migrate(ctx context.Context, cfg config.ClickHouse, db string, r Retention) (Applied, error) {
	return migrate(ctx, cfg, db, r, clusterMode{name: cfg.Cluster, db: db})
}

// clusterStatements is what runs for each statement of each migration, rewritten for mode; rw
// then knows every table the migrations create.
func clusterStatements(migrations []Migration, rw *clusterRewriter) ([][][]string, error) {
	out := make([][][]string, len(migrations))
	for i, m := range migrations {
		for j, stmt := range m.Statements {
			run, err := rw.rewrite(stmt)
			if err != nil {
				return nil, fmt.Errorf("schema: migration %04d_%s statement %d for cluster %s: %w", m.Version, m.Name, j+1, rw.m.name, err)
			}
			out[i] = append(out[i], run)
		}
	}
	return out, nil
}

func migrate(ctx context.Context, cfg config.ClickHouse, db string, r Retention, mode clusterMode) (Applied, error) {
	var done Applied
	migrations, err := Migrations(r)
	if err != nil {
		return done, err
	}
	rw := newClusterRewriter(mode)
	bookkeeping, err := rw.rewrite(createMigrationsTable)
	if err != nil {
		return done, fmt.Errorf("schema: keywatch_migrations for cluster %s: %w", mode.name, err)
	}
	statements, err := clusterStatements(migrations, rw)
	if err != nil {
		return done, err
	}
	admin, err := Open(cfg, "default")
	if err != nil {
		return done, err
	}
	defer admin.Close()
	adminNodes, err := openNodes(cfg, "default", mode.nodes)
	if err != nil {
		return done, err
	}
	defer closeAll(adminNodes)
	// db is validated as an identifier by config; identifiers cannot be bound parameters.
	if err := (schemaExec{admin, adminNodes}).exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db)+rw.onCluster()); err != nil {
		return done, fmt.Errorf("schema: create database %s: %w", db, err)
	}
	conn, err := Open(cfg, db)
	if err != nil {
		return done, err
	}
	defer conn.Close()
	nodes, err := openNodes(cfg, db, mode.nodes)
	if err != nil {
		return done, err
	}
	defer closeAll(nodes)
	x := schemaExec{conn, nodes}
	for _, stmt := range bookkeeping {
		if err := x.exec(ctx, stmt); err != nil {
			return done, fmt.Errorf("schema: create keywatch_migrations in %s: %w", db, err)
		}
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, selectApplied)
	if err != nil {
		return done, fmt.Errorf("schema: read keywatch_migrations in %s: %w", db, err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return done, err
		}
		applied[int(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return done, err
	}
	for k, m := range migrations {
		if applied[m.Version] {
			continue
		}
		for i, run := range statements[k] {
			for _, stmt := range run {
				if err := x.exec(ctx, stmt); err != nil {
					return done, fmt.Errorf("schema: migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
				}
			}
		}
		if err := conn.Exec(ctx, insertMigration, uint32(m.Version), m.Name); err != nil {
			return done, fmt.Errorf("schema: record migration %04d_%s: %w", m.Version, m.Name, err)
		}
		done.Versions = append(done.Versions, m.Version)
	}
	done.RetentionChanged, err = reconcileRetention(ctx, x, r, rw)
	return done, err
}

// ttlClauses are the TTL expressions of each table with a retention, as ClickHouse prints them
// in system.tables.engine_full; the migrations write the same expressions.
func ttlClauses(r Retention) map[string]string {
	return map[string]string{
		"auth_events":       fmt.Sprintf("toDateTime(ts) + toIntervalDay(%d)", r.AuthEventsDays),
		"key_minutes":       fmt.Sprintf("minute + toIntervalDay(%d)", r.RollupsDays),
		"dead_letters":      fmt.Sprintf("toDateTime(received_at) + toIntervalDay(%d)", r.DeadLettersDays),
		"key_caller_hours":  fmt.Sprintf("hour + toIntervalDay(%d)", r.RollupsDays),
		"key_caller_months": fmt.Sprintf("toLastDayOfMonth(month) + toIntervalDay(%d)", r.RollupsDays),
		"findings":          fmt.Sprintf("toDateTime(detected_at) + toIntervalDay(%d)", r.RollupsDays),
		"detector_runs":     fmt.Sprintf("toDateTime(started_at) + toIntervalDay(%d)", r.RollupsDays),
		"key_networks_1d":   fmt.Sprintf("day + toIntervalDay(%d)", r.RollupsDays),
		"key_ips_1h":        fmt.Sprintf("hour + toIntervalDay(%d)", r.RollupsDays),
		"key_ip_hours":      fmt.Sprintf("hour + toIntervalDay(%d)", r.RollupsDays),
		"key_refusals_1h":   fmt.Sprintf("hour + toIntervalDay(%d)", r.RollupsDays),
	}
}

// reconcileRetention sets the TTL of each table whose TTL differs from r (in cluster mode: of
// each table's _local table, where the TTL is) and returns those tables.
func reconcileRetention(ctx context.Context, x schemaExec, r Retention, rw *clusterRewriter) ([]string, error) {
	want := ttlClauses(r)
	rows, err := x.conn.Query(ctx, selectTTL)
	if err != nil {
		return nil, fmt.Errorf("schema: read table TTLs: %w", err)
	}
	var stale []string
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			rows.Close()
			return nil, err
		}
		if rw.m.name != "" {
			base, ok := strings.CutSuffix(name, localSuffix)
			if !ok {
				continue // the Distributed table has no TTL of its own
			}
			name = base
		}
		if clause, ok := want[name]; ok && !strings.Contains(engine, "TTL "+clause) {
			stale = append(stale, name)
		}
	}
	rows.Close()
	sort.Strings(stale)
	for _, table := range stale {
		// The clause is built from whole-day integers only.
		run, err := rw.rewrite("ALTER TABLE " + table + " MODIFY TTL " + want[table])
		if err != nil {
			return stale, fmt.Errorf("schema: set retention of %s: %w", table, err)
		}
		for _, stmt := range run {
			if err := x.exec(ctx, stmt); err != nil {
				return stale, fmt.Errorf("schema: set retention of %s: %w", table, err)
			}
		}
	}
	return stale, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
