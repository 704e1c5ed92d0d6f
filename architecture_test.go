// Package keywatch_test holds the architecture test: the layers of keywatch's packages and the
// imports between them, what the production binary links, which package owns each ClickHouse
// table, and the conventions every package shares. docs/architecture.md explains the same map.
package keywatch_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/keywatch/keywatch"

// layers ranks every package: a package imports only packages of a lower layer. A new package
// must be placed here (the test says so), which is where its place in the design is decided.
var layers = map[string]int{
	// 0: leaves, importing no keywatch package.
	"internal/glob": 0, "internal/refusal": 0, "internal/api": 0, "internal/testbed": 0,
	"internal/backoff": 0, "internal/schedule": 0,
	"ingest/mapping": 0, "ingest/geo": 0, "rotation": 0, "dashboards": 0, "deploy": 0, "openapi": 0,
	// 1: the selector language, leader election, the benchmarks' harness; 2: configuration; 3-4: connections and schema.
	"label": 1, "leader": 1, "internal/benchmark": 1,
	"internal/config":    2,
	"internal/tlsconfig": 3,
	"internal/schema":    4, "internal/broker": 4, "internal/schema/schematest": 5,
	// 5: the model of findings, ingest (the event store), and signed webhooks and their outbox.
	"finding": 5, "ingest": 5, "webhook": 5,
	// 6: the detectors; then what turns findings into alerts, messages and actions.
	"detect": 6, "demo/simulate": 6, "webhook/webhooktest": 6,
	"alerting": 7,
	"notify":   8, "action": 8, "alertmanager": 8,
	"digest": 9, "report": 9, "leakreport": 9, "readapi": 9,
	// 10: the web console, over the read API and the owners' reads and actions.
	"console": 10,
	// 11: the composition root; then the programs and the demo.
	"app":  11,
	"demo": 12, "cmd/keywatch": 12, "cmd/bench-detect": 12, "cmd/bench-ingest": 12, "cmd/bench-latency": 12,
	"cmd/keywatch-demo": 13,
	"":                  14, // this test
}

// forbidden are imports the layers allow but the design does not: consumers of findings read a
// finding's labels and fields, never a detector's types.
var forbidden = map[string][]string{
	"notify":       {"detect"},
	"action":       {"detect"},
	"alerting":     {"detect"},
	"alertmanager": {"detect"},
}

// internalMayImport are the packages outside internal/ that internal/ packages may import:
// leaves that own a format the configuration validates.
var internalMayImport = []string{"ingest/mapping", "label"}

// productionMustNotLink are packages the keywatch binary never links: test rigs, the in-process
// broker, the demo and what only it needs.
var productionMustNotLink = []string{
	"testing",
	"github.com/twmb/franz-go/pkg/kfake",
	"github.com/maxmind/mmdbwriter",
	"github.com/ebitengine/purego",
	module + "/internal/testbed",
	module + "/demo",
	module + "/demo/simulate",
	module + "/webhook/webhooktest",
	"github.com/standard-webhooks/standard-webhooks/libraries/go",
}

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,Imports,GoFiles", "./...").Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func short(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

// importRules returns every import that breaks the rules above, one line each.
func importRules(ps []pkg) []string {
	var bad []string
	for _, p := range ps {
		from := short(p.ImportPath)
		rank, ok := layers[from]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is in no layer: add it to layers in architecture_test.go (and to docs/architecture.md)", from))
			continue
		}
		for _, imp := range p.Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := short(imp)
			if r, ok := layers[to]; ok && r >= rank {
				bad = append(bad, fmt.Sprintf("%s (layer %d) imports %s (layer %d): a package imports only lower layers", from, rank, to, r))
			}
			for _, f := range forbidden[from] {
				if to == f || strings.HasPrefix(to, f+"/") {
					bad = append(bad, fmt.Sprintf("%s imports %s: it reads a finding's labels and fields (package finding), never a detector's types", from, to))
				}
			}
			if strings.HasPrefix(from, "internal/") && !strings.HasPrefix(to, "internal/") && !slices.Contains(internalMayImport, to) {
				bad = append(bad, fmt.Sprintf("%s imports %s: internal/ packages import only internal/ and %v", from, to, internalMayImport))
			}
		}
	}
	return bad
}

func TestImportsFollowTheLayers(t *testing.T) {
	for _, b := range importRules(listPackages(t)) {
		t.Error(b)
	}
}

// TestTheRulesCatchABadImport: the rules fail an import that points up, one that decodes a
// detector's types, and a package placed nowhere.
func TestTheRulesCatchABadImport(t *testing.T) {
	ps := []pkg{
		{ImportPath: module + "/ingest", Imports: []string{module + "/detect"}},
		{ImportPath: module + "/notify", Imports: []string{module + "/detect"}},
		{ImportPath: module + "/internal/config", Imports: []string{module + "/rotation"}},
		{ImportPath: module + "/newthing"},
	}
	got := strings.Join(importRules(ps), "\n")
	for _, want := range []string{"ingest (layer 5) imports detect", "notify imports detect", "internal/config imports rotation", "newthing is in no layer"} {
		if !strings.Contains(got, want) {
			t.Errorf("rules say:\n%s\nwant a line with %q", got, want)
		}
	}
}

// TestProductionBinaryLinksNoTestRig: the keywatch binary (cmd/keywatch, built as the Dockerfile
// builds it) links no test rig, no in-process broker and no demo.
func TestProductionBinaryLinksNoTestRig(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./cmd/keywatch").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/keywatch: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/app") {
		t.Fatalf("go list -deps ./cmd/keywatch does not name %s/app: %d packages", module, len(deps))
	}
	for _, d := range deps {
		for _, no := range productionMustNotLink {
			if d == no || strings.HasPrefix(d, no+"/") {
				t.Errorf("the keywatch binary links %s", d)
			}
		}
	}
}

// owners names the one package that owns each table, view and materialized view of the schema:
// only its SQL names the table; other packages call the functions it exports.
var owners = map[string]string{
	// The event store: what ingest writes, and the rollups ClickHouse's views build on its inserts.
	"auth_events": "ingest", "dead_letters": "ingest", "ingest_progress": "ingest",
	"ingest_progress_auth_events_mv": "ingest", "ingest_progress_dead_letters_mv": "ingest",
	"ingest_progress_key_lifecycle_events_mv": "ingest",
	"key_minutes": "ingest", "key_minutes_in": "ingest", "key_minutes_mv": "ingest", "key_minutes_progress_mv": "ingest",
	"key_caller_hours": "ingest", "key_caller_hours_in": "ingest", "key_caller_hours_mv": "ingest", "key_caller_hours_progress_mv": "ingest",
	"key_caller_months": "ingest", "key_caller_months_mv": "ingest",
	"key_ips_1h": "ingest", "key_ips_1h_in": "ingest", "key_ips_1h_mv": "ingest", "key_ips_1h_progress_mv": "ingest",
	"key_networks_1d": "ingest", "key_networks_1d_in": "ingest", "key_networks_1d_mv": "ingest", "key_networks_1d_progress_mv": "ingest",
	"key_usage": "ingest", "key_usage_in": "ingest", "key_usage_mv": "ingest", "key_usage_progress_mv": "ingest",
	"key_fingerprints": "ingest", "key_fingerprints_in": "ingest", "key_fingerprints_mv": "ingest", "key_fingerprints_progress_mv": "ingest",
	"key_refusals_1h": "ingest", "key_refusals_1h_in": "ingest", "key_refusals_1h_mv": "ingest", "key_refusals_1h_progress_mv": "ingest",
	"key_lifecycle_events": "ingest",
	// A key's state, from its lifecycle events (rotation.Build's rules in SQL).
	"key_lifecycle": "rotation",
	"key_ip_hours":  "detect",
	"findings":      "finding", "detector_runs": "finding",
	"alerts": "alerting", "alert_notifications_state": "alerting", "silences": "alerting", "alert_history": "alerting",
	"notifications": "notify", "slack_interaction_macs": "notify",
	"actions": "action", "action_audit": "action",
	"rotation_nudges":    "digest",
	"webhook_deliveries": "webhook",
}

// eventStoreReaders may name the event store's tables in their SQL: the detectors and the
// compliance report are queries over stored events, and rotation builds a key's history from its
// lifecycle events. bench-detect fills the store with synthetic rows as ingest would, faster.
var eventStoreReaders = []string{"detect", "report", "rotation", "cmd/bench-detect"}

// sqlTable finds the tables a SQL text names.
var sqlTable = regexp.MustCompile(`\b(?:FROM|JOIN|INTO|TABLE|EXISTS)\s+([a-z_][a-z0-9_]*)`)

// tableRules returns every string literal in the non-test Go files of ps that names a table its
// package does not own, one line each. internal/schema applies the migrations of every table.
func tableRules(t *testing.T, ps []pkg, tables map[string]bool) []string {
	var bad []string
	for _, p := range ps {
		name := short(p.ImportPath)
		if name == "internal/schema" {
			continue
		}
		for _, file := range p.GoFiles {
			path := filepath.Join(p.Dir, file)
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, _ := strconv.Unquote(lit.Value)
				for _, m := range sqlTable.FindAllStringSubmatch(s, -1) {
					table := m[1]
					owner := owners[table]
					switch {
					case !tables[table], owner == name:
					case owner == "ingest" && slices.Contains(eventStoreReaders, name):
					default:
						bad = append(bad, fmt.Sprintf("%s/%s names table %s, owned by %s: call a function %s exports", name, file, table, owner, owner))
					}
				}
				return true
			})
		}
	}
	return bad
}

// schemaTables are the tables and views the migrations leave: created, and not dropped by a later
// migration.
func schemaTables(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("internal/schema/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	sort.Strings(files) // numbered: in the order they apply
	statement := regexp.MustCompile(`(?i)(CREATE|DROP) (?:OR REPLACE )?(?:TABLE|MATERIALIZED VIEW|VIEW)(?: IF (?:NOT )?EXISTS)? ([a-z_0-9]+)`)
	tables := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range statement.FindAllStringSubmatch(string(b), -1) {
			if strings.EqualFold(m[1], "CREATE") {
				tables[m[2]] = true
			} else {
				delete(tables, m[2])
			}
		}
	}
	return tables
}

func TestEveryTableHasAnOwnerWhoseSQLAloneNamesIt(t *testing.T) {
	tables := schemaTables(t)
	var names []string
	for table := range tables {
		names = append(names, table)
	}
	sort.Strings(names)
	for _, table := range names {
		if owners[table] == "" {
			t.Errorf("table %s has no owner: add it to owners in architecture_test.go", table)
		}
	}
	for table := range owners {
		if !tables[table] {
			t.Errorf("owners names %s, which the migrations do not leave", table)
		}
	}
	for _, b := range tableRules(t, listPackages(t), tables) {
		t.Error(b)
	}
}

// TestTheRulesCatchAForeignTable: SQL naming another package's table fails, the owner's passes.
func TestTheRulesCatchAForeignTable(t *testing.T) {
	dir := t.TempDir()
	src := "package action\n\nconst q = `SELECT * FROM alerts FINAL`\nconst own = `INSERT INTO action_audit (at) VALUES (?)`\n"
	if err := os.WriteFile(filepath.Join(dir, "q.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tableRules(t, []pkg{{ImportPath: module + "/action", Dir: dir, GoFiles: []string{"q.go"}}},
		map[string]bool{"alerts": true, "action_audit": true})
	if len(got) != 1 || !strings.Contains(got[0], "names table alerts, owned by alerting") {
		t.Errorf("rules say %q, want one line about alerts", got)
	}
}

// errorKey finds a log call whose error attribute is keyed "error" instead of "err".
var errorKey = regexp.MustCompile(`\.(?:Debug|Info|Warn|Error|Log)(?:Context)?\([^\n]*"error",`)

// TestErrorsAreLoggedUnderOneKey: every log line keys its error "err".
func TestErrorsAreLoggedUnderOneKey(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, file := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, file))
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(b), "\n") {
				if errorKey.MatchString(line) {
					t.Errorf("%s/%s:%d logs an error under \"error\"; the key is \"err\"", short(p.ImportPath), file, i+1)
				}
			}
		}
	}
}

// docRow is a row of a table in docs/architecture.md whose first cell is code: `name`.
var docRow = regexp.MustCompile("(?m)^\\| (`[^|]+`|`\\.` \\(root\\)) \\| ([^|]+) \\|")

// TestTheMapMatchesTheCode: docs/architecture.md lists every package of go list ./... in its layer
// and no other, and every table with its owner.
func TestTheMapMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	tablesAt := strings.Index(doc, "## Tables and owners")
	if tablesAt < 0 {
		t.Fatal(`docs/architecture.md has no "## Tables and owners"`)
	}
	documented := map[string]string{} // package -> layer
	for _, m := range docRow.FindAllStringSubmatch(doc[:tablesAt], -1) {
		name := strings.Trim(m[1], "`")
		if m[1] == "`.` (root)" {
			name = ""
		}
		documented[name] = strings.TrimSpace(m[2])
	}
	for _, p := range listPackages(t) {
		name := short(p.ImportPath)
		layer, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("docs/architecture.md does not list package %q", name)
		case layer != strconv.Itoa(layers[name]):
			t.Errorf("docs/architecture.md puts %q in layer %s, the test in layer %d", name, layer, layers[name])
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("docs/architecture.md lists package %q, which go list ./... does not know", name)
	}
	owned := map[string]string{}
	for _, m := range docRow.FindAllStringSubmatch(doc[tablesAt:], -1) {
		owner := strings.Trim(strings.TrimSpace(m[2]), "`")
		for _, table := range strings.Split(m[1], ",") {
			owned[strings.Trim(strings.TrimSpace(table), "`")] = owner
		}
	}
	for table, owner := range owners {
		if owned[table] != owner {
			t.Errorf("docs/architecture.md says %s is owned by %q, the test by %q", table, owned[table], owner)
		}
		delete(owned, table)
	}
	for table := range owned {
		t.Errorf("docs/architecture.md names table %s, which has no owner in the test", table)
	}
}
