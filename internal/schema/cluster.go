package schema

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
)

// Cluster mode (clickhouse.cluster set). The migrations are written once, for one server; here they
// are rewritten mechanically, statement by statement:
//
//   - CREATE TABLE t (...) ENGINE = XMergeTree(params) ... becomes t_local ON CLUSTER with engine
//     ReplicatedXMergeTree('/clickhouse/tables/{shard}/<db>/t_local', '{replica}', params), and a
//     table t ON CLUSTER AS t_local ENGINE = Distributed(cluster, db, t_local, cityHash64(k)) where
//     k is the leading ORDER BY column: rows of one identity (one key, one fingerprint) stay on one
//     shard, so FINAL, argMax and GROUP BY reads through t give the single-server answer.
//     A non_replicated_deduplication_window setting gets its replicated_deduplication_window twin,
//     so a retried insert (insert_deduplication_token) is dropped on the replicas too.
//   - CREATE TABLE t (...) ENGINE = Null (a rollup's input table) becomes a Null t_local ON CLUSTER
//     and t ON CLUSTER Distributed over it, sharded by cityHash64 of its first column (key_id, or
//     key_fingerprint), as the rollup its view writes to is sharded by its leading ORDER BY column.
//   - CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s becomes v ON CLUSTER TO t_local reading
//     s_local: each shard rolls up its own rows.
//   - ALTER TABLE t ADD/MODIFY/RENAME/COMMENT COLUMN applies to t_local, then t (DROP COLUMN: t first);
//     any other ALTER (TTL, settings, mutations, indexes) to t_local only; ALTER TABLE v MODIFY QUERY
//     of a view reads the _local tables; all ON CLUSTER.
//   - DROP, TRUNCATE and OPTIMIZE go ON CLUSTER to the tables they concern.
//   - INSERT and SELECT run once, as written, through the Distributed tables: a backfill reads every
//     shard and writes each row to its shard.
//
// Anything else is refused with an error naming the statement, so a migration that cluster mode does
// not understand fails its test, not a production upgrade.
type clusterMode struct {
	// name is the cluster of remote_servers; "" is a single server: nothing is rewritten.
	name string
	// db is the database, named in Distributed(...) and in the Keeper paths.
	db string
	// nodes and plainEngines are for tests only: the embedded test server (clickhouse-local) has
	// no DDL worker and no interserver port. With nodes (native addresses of every server of the
	// cluster) ON CLUSTER is left out and each schema statement runs on every node instead, as the
	// DDL worker would run it; plainEngines keeps the _local engines unreplicated.
	nodes        []string
	plainEngines bool
}

// schemaExec runs rewritten statements: on conn, or in a test's emulated cluster (clusterMode.nodes)
// each schema statement on every node, and INSERT/SELECT once on conn.
type schemaExec struct {
	conn  driver.Conn
	nodes []driver.Conn
}

func (x schemaExec) exec(ctx context.Context, stmt string) error {
	if len(x.nodes) == 0 || reRunOnce.MatchString(strings.TrimSpace(stmt)) {
		return x.conn.Exec(ctx, stmt)
	}
	for _, n := range x.nodes {
		if err := n.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// openNodes connects to database db on each of the emulated cluster's nodes.
func openNodes(cfg config.ClickHouse, db string, nodes []string) ([]driver.Conn, error) {
	var conns []driver.Conn
	for _, addr := range nodes {
		c := cfg
		c.Addr = []string{addr}
		conn, err := Open(c, db)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeAll(conns []driver.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// localSuffix names the per-shard table under each Distributed table.
const localSuffix = "_local"

var (
	reCreateTable = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(`)
	reEngine      = regexp.MustCompile(`(?is)^\s*ENGINE\s*=\s*([A-Za-z]+)\s*(\()?`)
	reOrderBy     = regexp.MustCompile(`(?is)\bORDER\s+BY\s+\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s*([(]?)`)
	reCreateMV    = regexp.MustCompile(`(?is)^CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)\s+TO\s+([A-Za-z_][A-Za-z0-9_]*)\s+AS\s+(.*)$`)
	reCreateView  = regexp.MustCompile(`(?is)^CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)\s+(AS\s+.*)$`)
	reAlter       = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$`)
	reColumnAlter = regexp.MustCompile(`(?is)^(ADD|MODIFY|RENAME|COMMENT)\s+COLUMN\b`)
	reDropColumn  = regexp.MustCompile(`(?is)^DROP\s+COLUMN\b`)
	reDedupWindow = regexp.MustCompile(`\bnon_replicated_deduplication_window\s*=\s*(\d+)`)
	reModifyQuery = regexp.MustCompile(`(?is)^MODIFY\s+QUERY\b`)
	reDrop        = regexp.MustCompile(`(?is)^DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)(\s+SYNC)?$`)
	reOnTable     = regexp.MustCompile(`(?is)^(TRUNCATE\s+TABLE\s+(?:IF\s+EXISTS\s+)?|OPTIMIZE\s+TABLE\s+)([A-Za-z_][A-Za-z0-9_]*)(.*)$`)
	reRunOnce     = regexp.MustCompile(`(?is)^(INSERT|SELECT|WITH)\b`)
	reFirstColumn = regexp.MustCompile(`^\(\s*([A-Za-z_][A-Za-z0-9_]*)\s`)
	reFromTable   = regexp.MustCompile(`(?i)\b(FROM|JOIN)(\s+)([A-Za-z_][A-Za-z0-9_]*)\b`)
)

// replicable says whether cluster mode can turn engine into its Replicated form, parameters kept.
func replicable(engine string) bool {
	switch engine {
	case "MergeTree", "ReplacingMergeTree", "AggregatingMergeTree", "SummingMergeTree",
		"CollapsingMergeTree", "VersionedCollapsingMergeTree", "GraphiteMergeTree":
		return true
	}
	return false
}

// clusterRewriter rewrites a sequence of statements; it remembers the tables created so far, so
// that views and ALTERs know which names have a _local table under them.
type clusterRewriter struct {
	m      clusterMode
	tables map[string]bool
}

func newClusterRewriter(m clusterMode) *clusterRewriter {
	return &clusterRewriter{m: m, tables: map[string]bool{}}
}

// rewrite returns what to run instead of stmt; stmt itself when cluster mode is off.
func (r *clusterRewriter) rewrite(stmt string) ([]string, error) {
	if r.m.name == "" {
		return []string{stmt}, nil
	}
	s := strings.TrimSpace(stmt)
	switch {
	case reCreateTable.MatchString(s):
		return r.createTable(s)
	case reCreateMV.MatchString(s):
		g := reCreateMV.FindStringSubmatch(s)
		if !r.tables[g[3]] {
			return nil, fmt.Errorf("materialized view %s writes to %s, which no migration created as a table", g[2], g[3])
		}
		return []string{fmt.Sprintf("CREATE MATERIALIZED VIEW %s%s%s TO %s AS %s",
			g[1], g[2], r.onCluster(), g[3]+localSuffix, r.localSources(g[4]))}, nil
	case reCreateView.MatchString(s):
		g := reCreateView.FindStringSubmatch(s)
		return []string{fmt.Sprintf("CREATE %sVIEW %s%s%s %s", g[1], g[2], g[3], r.onCluster(), g[4])}, nil
	case reAlter.MatchString(s):
		g := reAlter.FindStringSubmatch(s)
		table, cmd := g[1], g[2]
		if !r.tables[table] { // a view: MODIFY QUERY reads the local tables, like its CREATE
			if reModifyQuery.MatchString(cmd) {
				cmd = r.localSources(cmd)
			}
			return []string{fmt.Sprintf("ALTER TABLE %s%s %s", table, r.onCluster(), cmd)}, nil
		}
		local := fmt.Sprintf("ALTER TABLE %s%s %s", table+localSuffix, r.onCluster(), cmd)
		dist := fmt.Sprintf("ALTER TABLE %s%s %s", table, r.onCluster(), cmd)
		switch {
		case reColumnAlter.MatchString(cmd):
			return []string{local, dist}, nil
		case reDropColumn.MatchString(cmd):
			return []string{dist, local}, nil
		default:
			return []string{local}, nil
		}
	case reDrop.MatchString(s):
		g := reDrop.FindStringSubmatch(s)
		out := []string{fmt.Sprintf("DROP %s %s%s%s%s", g[1], g[2], g[3], r.onCluster(), g[4])}
		if r.tables[g[3]] {
			out = append(out, fmt.Sprintf("DROP TABLE %s%s%s%s", g[2], g[3]+localSuffix, r.onCluster(), g[4]))
			delete(r.tables, g[3])
		}
		return out, nil
	case reOnTable.MatchString(s):
		g := reOnTable.FindStringSubmatch(s)
		table := g[2]
		if r.tables[table] {
			table += localSuffix
		}
		return []string{g[1] + table + r.onCluster() + g[3]}, nil
	case reRunOnce.MatchString(s):
		return []string{s}, nil
	}
	return nil, fmt.Errorf("cluster mode cannot rewrite this statement (CREATE TABLE/VIEW/MATERIALIZED VIEW ... TO, ALTER TABLE, DROP, TRUNCATE, OPTIMIZE, INSERT and SELECT can be): %.80s", s)
}

func (r *clusterRewriter) onCluster() string {
	if r.m.name == "" || len(r.m.nodes) > 0 {
		return ""
	}
	return " ON CLUSTER " + quoteIdent(r.m.name)
}

// createTable splits CREATE TABLE t into the replicated t_local and the Distributed t.
func (r *clusterRewriter) createTable(s string) ([]string, error) {
	g := reCreateTable.FindStringSubmatchIndex(s)
	ifNotExists, table := "", s[g[4]:g[5]]
	if g[2] >= 0 {
		ifNotExists = s[g[2]:g[3]]
	}
	open := g[1] - 1
	end, err := closingParen(s, open)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", table, err)
	}
	columns, rest := s[open:end+1], s[end+1:]
	e := reEngine.FindStringSubmatchIndex(rest)
	if e == nil {
		return nil, fmt.Errorf("table %s: no ENGINE = right after the columns", table)
	}
	engine := rest[e[2]:e[3]]
	if engine == "Null" {
		return r.createNullTable(table, ifNotExists, columns, rest)
	}
	if !replicable(engine) {
		return nil, fmt.Errorf("table %s: engine %s has no Replicated form; cluster mode needs a *MergeTree", table, engine)
	}
	var params string
	after := rest[e[3]:]
	if e[4] >= 0 { // ENGINE = X( ... )
		pEnd, err := closingParen(rest, e[4])
		if err != nil {
			return nil, fmt.Errorf("table %s engine: %w", table, err)
		}
		params = strings.TrimSpace(rest[e[4]+1 : pEnd])
		after = rest[pEnd+1:]
	}
	o := reOrderBy.FindStringSubmatch(after)
	if o == nil || o[2] == "(" {
		return nil, fmt.Errorf("table %s: cluster mode shards by the leading ORDER BY column, and ORDER BY does not start with a column", table)
	}
	shardKey := "cityHash64(" + o[1] + ")"

	local := table + localSuffix
	newEngine := engine
	if params != "" {
		newEngine += "(" + params + ")"
	}
	if !r.m.plainEngines {
		// A retried insert is dropped by the same window on a Replicated table as on a plain one.
		if strings.Count(after, "replicated_deduplication_window") == strings.Count(after, "non_replicated_deduplication_window") {
			after = reDedupWindow.ReplaceAllString(after, "${0}, replicated_deduplication_window = ${1}")
		}
		args := []string{quoteString("/clickhouse/tables/{shard}/" + r.m.db + "/" + local), quoteString("{replica}")}
		if params != "" {
			args = append(args, params)
		}
		newEngine = "Replicated" + engine + "(" + strings.Join(args, ", ") + ")"
	}
	r.tables[table] = true
	return []string{
		fmt.Sprintf("CREATE TABLE %s%s%s\n%s\nENGINE = %s%s", ifNotExists, local, r.onCluster(), columns, newEngine, after),
		fmt.Sprintf("CREATE TABLE %s%s%s AS %s\nENGINE = Distributed(%s, %s, %s, %s)", ifNotExists, table, r.onCluster(), local,
			quoteString(r.m.name), quoteString(r.m.db), quoteString(local), shardKey),
	}, nil
}

// createNullTable splits an input table (engine Null: its views take what is inserted, nothing is
// stored) into a Null t_local on every server and the Distributed t, sharded by its first column
// as the tables its views write to are sharded by theirs: rows of one identity reach the shard that
// stores its rollups.
func (r *clusterRewriter) createNullTable(table, ifNotExists, columns, rest string) ([]string, error) {
	first := reFirstColumn.FindStringSubmatch(columns)
	if first == nil {
		return nil, fmt.Errorf("table %s: cluster mode shards an input table by its first column, and its column list does not start with one", table)
	}
	local := table + localSuffix
	r.tables[table] = true
	return []string{
		fmt.Sprintf("CREATE TABLE %s%s%s\n%s\n%s", ifNotExists, local, r.onCluster(), columns, strings.TrimSpace(rest)),
		fmt.Sprintf("CREATE TABLE %s%s%s AS %s\nENGINE = Distributed(%s, %s, %s, cityHash64(%s))", ifNotExists, table, r.onCluster(), local,
			quoteString(r.m.name), quoteString(r.m.db), quoteString(local), first[1]),
	}, nil
}

// localSources makes a view's SELECT read the _local tables under the Distributed ones it names.
func (r *clusterRewriter) localSources(sel string) string {
	return reFromTable.ReplaceAllStringFunc(sel, func(m string) string {
		g := reFromTable.FindStringSubmatch(m)
		if !r.tables[g[3]] {
			return m
		}
		return g[1] + g[2] + g[3] + localSuffix
	})
}

// closingParen returns the index of the parenthesis that closes the one at open, skipping quoted
// strings and identifiers.
func closingParen(s string, open int) (int, error) {
	depth := 0
	var quote byte
	for i := open; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("the parenthesis at offset %d is never closed", open)
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// selectShards counts the shards of a cluster in the server's remote_servers. Argument: cluster.
const selectShards = `SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?`

// Shards is how many shards cluster has, as the server conn talks to sees it. Ingest's exactly-once
// guarantee holds with one (replicas only): a batch to several shards is one insert per shard.
func Shards(ctx context.Context, conn driver.Conn, cluster string) (int, error) {
	var n uint64
	if err := conn.QueryRow(ctx, selectShards, cluster).Scan(&n); err != nil {
		return 0, fmt.Errorf("schema: count the shards of cluster %s: %w", cluster, err)
	}
	return int(n), nil
}
