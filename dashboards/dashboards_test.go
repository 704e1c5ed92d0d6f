package dashboards

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"go.yaml.in/yaml/v3"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// wantColumns is what each query must return, in order: the columns its panel shows (table
// columns, or time then label and value columns of a time series). Keyed by
// "file/panel title/refId", "file/$variable" and "file/annotation name". A query that loses,
// renames or reorders a column fails the test, and so does a query without an entry here.
var wantColumns = map[string][]string{
	"rotation-overview.json/$rotation":                                {"rotation"},
	"rotation-overview.json/Keys by state/A":                          {"state", "keys"},
	"rotation-overview.json/Key states/A":                             {"key_id", "client_id", "state", "since", "rotation", "grace_until"},
	"rotation-overview.json/Rotations in flight/A":                    {"rotation", "client_id", "started_at", "grace_until", "pct_on_new_key", "seconds_left"},
	"rotation-overview.json/Traffic on old and new key ($rotation)/A": {"time", "key", "requests"},
	"rotation-overview.json/Lifecycle events/A":                       {"time", "type", "key_id", "client_id", "new_key_id", "grace_until", "reason"},
	"lingering.json/$rotation":                                        {"rotation"},
	"lingering.json/Callers still on the old key ($rotation)/A":       {"client_id", "ip", "user_agent", "country", "requests", "failures", "first_seen", "last_seen"},
	"lingering.json/Requests on the old key by client ($rotation)/A":  {"time", "client_id", "requests"},
	"lingering.json/Lingering findings ($rotation)/A":                 {"fingerprint", "last_detected_at", "severity", "client_id", "score", "summary"},
	"failures.json/$key":                                              {"key_id"},
	"failures.json/$client":                                           {"client_id"},
	"failures.json/Rotation steps":                                    {"time", "text", "tags"},
	"failures.json/Failures by outcome/A":                             {"time", "outcome", "failures"},
	"failures.json/Failure rate/A":                                    {"time", "failure_pct"},
	"failures.json/Failures by key, client and outcome/A":             {"key_id", "client_id", "outcome", "failures", "last_seen"},
	"leak.json/$key":                                                  {"key_id"},
	"leak.json/New networks per key/A":                                {"key_id", "network", "country", "as_org", "requests", "first_seen", "last_seen"},
	"leak.json/New countries per key/A":                               {"key_id", "country", "networks", "requests", "first_seen"},
	"leak.json/Distinct IPs per hour/A":                               {"time", "key_id", "distinct_ips"},
	"leak.json/Distinct IPs against baseline/A":                       {"key_id", "peak_ips", "baseline_avg", "baseline_max", "ratio_to_baseline_max"},
	"alerts.json/Alerts fired/A":                                      {"time", "detector", "alerts"},
	"alerts.json/Alerts/A":                                            {"active_since", "state", "severity", "detector", "key_id", "client_id", "rotation_id", "summary", "fired_at", "resolved_at", "silenced", "inhibited", "fingerprint"},
	"alerts.json/Revocations and rollbacks/A":                         {"at", "kind", "action_id", "key_id", "client_id", "event", "guardrail", "actor", "http_status", "detail"},
	"alerts.json/Notifications/A":                                     {"updated_at", "group_key", "channel", "episode", "state", "resolved", "attempts", "last_error"},
	"pipeline.json/Ingest rate/A":                                     {"time", "events_per_second"},
	"pipeline.json/Ingest lag/A":                                      {"time", "lag_p50_seconds", "lag_p95_seconds"},
	"pipeline.json/Dead letters by reason/A":                          {"time", "reason", "dead_letters"},
	"pipeline.json/Stored offsets/A":                                  {"table_name", "topic", "partition", "max_offset"},
	"pipeline.json/Detector runs/A":                                   {"detector", "last_finished", "runs", "failed_runs", "findings", "last_error"},
}

const dataSourceUID = "keywatch-clickhouse"

type dataSource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string     `json:"refId"`
	Datasource dataSource `json:"datasource"`
	RawSQL     string     `json:"rawSql"`
	Format     int        `json:"format"`
	QueryType  string     `json:"queryType"`
}

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		Title      string     `json:"title"`
		Type       string     `json:"type"`
		Datasource dataSource `json:"datasource"`
		Targets    []target   `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string     `json:"name"`
			Type       string     `json:"type"`
			Datasource dataSource `json:"datasource"`
			Query      string     `json:"query"`
			Multi      bool       `json:"multi"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name    string  `json:"name"`
			BuiltIn int     `json:"builtIn"`
			Target  *target `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
}

// timeRange is what the test's Grafana asks for: the six hours before the scenario's now, at
// a five-minute interval.
type timeRange struct {
	from, to time.Time
	interval time.Duration
}

var (
	macroRe    = regexp.MustCompile(`\$__(\w+)(?:\(([^()]*)\))?`)
	variableRe = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\$([A-Za-z]\w*)`)
)

// expandMacros expands the plugin's macros as grafana-clickhouse-datasource does
// (pkg/macros/macros.go): times as toDateTime(<unix seconds>), intervals in whole seconds (at least 1).
func expandMacros(sql string, tr timeRange) (string, error) {
	var err error
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	secs := max(int(tr.interval.Seconds()), 1)
	out := macroRe.ReplaceAllStringFunc(sql, func(m string) string {
		sub := macroRe.FindStringSubmatch(m)
		name, arg := sub[1], strings.TrimSpace(sub[2])
		needArg := func() bool {
			if arg == "" {
				err = fmt.Errorf("macro $__%s needs a column argument", name)
				return false
			}
			return true
		}
		switch name {
		case "fromTime":
			return dt(tr.from)
		case "toTime":
			return dt(tr.to)
		case "interval_s":
			return fmt.Sprint(secs)
		case "timeFilter":
			if !needArg() {
				return m
			}
			return fmt.Sprintf("%s >= %s AND %s <= %s", arg, dt(tr.from), arg, dt(tr.to))
		case "timeInterval":
			if !needArg() {
				return m
			}
			return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", arg, secs)
		}
		err = fmt.Errorf("macro $__%s is not one the test expands", name)
		return m
	})
	return out, err
}

// substitute replaces dashboard variables as Grafana does before the query reaches the plugin:
// $v and ${v} give the (first) value, ${v:singlequote} the quoted, comma-separated list.
func substitute(sql string, vars map[string][]string) (string, error) {
	var err error
	out := variableRe.ReplaceAllStringFunc(sql, func(m string) string {
		sub := variableRe.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "" {
			name = sub[3]
		}
		values, ok := vars[name]
		if !ok {
			err = fmt.Errorf("variable %s is not defined by the dashboard", m)
			return m
		}
		if len(values) == 0 {
			err = fmt.Errorf("variable %s has no values", m)
			return m
		}
		switch format {
		case "":
			return values[0]
		case "singlequote":
			q := make([]string, len(values))
			for i, v := range values {
				q[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
			}
			return strings.Join(q, ",")
		}
		err = fmt.Errorf("variable format %s is not one the test knows", m)
		return m
	})
	return out, err
}

// TestEveryQueryRunsOnScenarioData runs every variable, panel and annotation query of every
// dashboard against a migrated database holding a small scenario, and checks that each one
// succeeds, returns rows and returns exactly the columns listed in wantColumns.
func TestEveryQueryRunsOnScenarioData(t *testing.T) {
	ctx := context.Background()
	conn := newScenario(t)
	tr := timeRange{from: now.Add(-6 * time.Hour), to: now, interval: 5 * time.Minute}

	files, err := fs.Glob(Files, "*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards embedded: %v", err)
	}
	seen := map[string]bool{}
	uids := map[string]string{}
	for _, file := range files {
		raw, err := fs.ReadFile(Files, file)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
			t.Errorf("%s: uid %q, title %q, schemaVersion %d", file, d.UID, d.Title, d.SchemaVersion)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %s already used by %s", file, d.UID, other)
		}
		uids[d.UID] = file

		run := func(key, sql string, vars map[string][]string, timeSeries bool) [][]string {
			t.Helper()
			seen[key] = true
			want, ok := wantColumns[key]
			if !ok {
				t.Errorf("%s: no expected columns in wantColumns", key)
			}
			q, err := substitute(sql, vars)
			if err == nil {
				q, err = expandMacros(q, tr)
			}
			if err != nil {
				t.Errorf("%s: %v", key, err)
				return nil
			}
			cols, rows, err := query(ctx, conn, q)
			if err != nil {
				t.Errorf("%s: %v\n%s", key, err, q)
				return nil
			}
			if ok && !slices.Equal(cols, want) {
				t.Errorf("%s: columns %v, want %v", key, cols, want)
			}
			if timeSeries && (len(cols) == 0 || cols[0] != "time") {
				t.Errorf("%s: a time series query's first column is time, got %v", key, cols)
			}
			if len(rows) == 0 {
				t.Errorf("%s: no rows on the scenario data\n%s", key, q)
			} else {
				t.Logf("%s: %d rows, first %v", key, len(rows), rows[0])
			}
			return rows
		}

		vars := map[string][]string{}
		for _, v := range d.Templating.List {
			if v.Type != "query" || v.Datasource.UID != dataSourceUID {
				t.Errorf("%s: variable %s: type %q, datasource %q", file, v.Name, v.Type, v.Datasource.UID)
				continue
			}
			rows := run(file+"/$"+v.Name, v.Query, vars, false)
			for _, r := range rows {
				vars[v.Name] = append(vars[v.Name], r[0])
			}
			if !v.Multi && len(vars[v.Name]) > 1 {
				vars[v.Name] = vars[v.Name][:1] // Grafana selects the first value
			}
		}
		for _, a := range d.Annotations.List {
			if a.BuiltIn == 1 {
				continue
			}
			if a.Target == nil || a.Target.Datasource.UID != dataSourceUID {
				t.Errorf("%s: annotation %s has no query on %s", file, a.Name, dataSourceUID)
				continue
			}
			run(file+"/"+a.Name, a.Target.RawSQL, vars, false)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				wantFormat, wantType := 1, "table"
				if p.Type == "timeseries" {
					wantFormat, wantType = 0, "timeseries"
				}
				if tg.Datasource.UID != dataSourceUID || p.Datasource.UID != dataSourceUID ||
					tg.Format != wantFormat || tg.QueryType != wantType {
					t.Errorf("%s/%s/%s: datasource %q, format %d, queryType %q; want %s, %d, %s",
						file, p.Title, tg.RefID, tg.Datasource.UID, tg.Format, tg.QueryType, dataSourceUID, wantFormat, wantType)
				}
				run(file+"/"+p.Title+"/"+tg.RefID, tg.RawSQL, vars, p.Type == "timeseries")
			}
		}
	}
	for key := range wantColumns {
		if !seen[key] {
			t.Errorf("wantColumns has %s, which no dashboard query has", key)
		}
	}
}

// query runs q and returns its column names and its rows as strings.
func query(ctx context.Context, conn driver.Conn, q string) ([]string, [][]string, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, ct := range rows.ColumnTypes() {
			vals[i] = newOf(ct)
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(deref(v))
		}
		out = append(out, row)
	}
	return cols, out, rows.Err()
}

// TestProvisioningNamesTheDataSource checks that the provisioned data source is the one every
// dashboard uses, and that the dashboards provider reads the folder the files are deployed to.
func TestProvisioningNamesTheDataSource(t *testing.T) {
	ds, err := fs.ReadFile(Files, "provisioning/datasources/clickhouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: grafana-clickhouse-datasource", "uid: " + dataSourceUID, "protocol: native",
		"defaultDatabase: keywatch", "password: ${CLICKHOUSE_PASSWORD}"} {
		if !strings.Contains(string(ds), want) {
			t.Errorf("datasource provisioning lacks %q", want)
		}
	}
	p, err := fs.ReadFile(Files, "provisioning/dashboards/keywatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"type: file", "path: /var/lib/grafana/dashboards/keywatch"} {
		if !strings.Contains(string(p), want) {
			t.Errorf("dashboards provisioning lacks %q", want)
		}
	}
}

// TestProvisionedDataSourceTLS provisions the data source as Grafana would, from its environment
// and the files it reads, and reads the result as the plugin does: the local stack's plaintext
// connection, and TLS with a CA of the test's own.
func TestProvisionedDataSourceTLS(t *testing.T) {
	ca, err := testbed.NewCA(t.TempDir(), "clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CLICKHOUSE_HOST": "clickhouse", "CLICKHOUSE_PORT": "9000", "CLICKHOUSE_USER": "keywatch", "CLICKHOUSE_PASSWORD": "pw",
		"CLICKHOUSE_SECURE": "false", "CLICKHOUSE_TLS_SKIP_VERIFY": "false", "CLICKHOUSE_TLS_WITH_CA_CERT": "false",
	}
	// The files Grafana sees: the provisioning directory as mounted at its default path.
	files := func(path string) ([]byte, error) {
		rel, ok := strings.CutPrefix(path, "/etc/grafana/provisioning/")
		if !ok {
			return nil, fmt.Errorf("%s is not in the provisioning directory", path)
		}
		return fs.ReadFile(Files, "provisioning/"+rel)
	}

	plain, err := provisionDataSource(env, files)
	if err != nil {
		t.Fatalf("local stack: %v", err)
	}
	if want := (pluginSettings{Host: "clickhouse", Port: 9000, Username: "keywatch", Password: "pw"}); !reflect.DeepEqual(plain, want) {
		t.Errorf("local stack: data source %+v, want %+v", plain, want)
	}

	maps.Copy(env, map[string]string{"CLICKHOUSE_HOST": "ch.example.net", "CLICKHOUSE_PORT": "9440",
		"CLICKHOUSE_SECURE": "true", "CLICKHOUSE_TLS_WITH_CA_CERT": "true"})
	withCA := func(path string) ([]byte, error) {
		if path == "/etc/grafana/provisioning/datasources/clickhouse-ca.pem" {
			return caPEM, nil // the operator's CA mounted over the placeholder
		}
		return files(path)
	}
	secure, err := provisionDataSource(env, withCA)
	if err != nil {
		t.Fatalf("TLS with a CA: %v", err)
	}
	if !secure.Secure || secure.Port != 9440 || secure.Host != "ch.example.net" || !secure.WithCACert || secure.SkipVerify {
		t.Errorf("TLS with a CA: data source %+v", secure)
	}
	// The plugin verifies the server against exactly that CA.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(secure.CACert)) || !pool.Equal(ca.Pool) {
		t.Errorf("TLS with a CA: tlsCACert is not the mounted CA:\n%s", secure.CACert)
	}

	// Grafana has no defaults: an unset variable is an empty string, which the plugin refuses.
	delete(env, "CLICKHOUSE_SECURE")
	if _, err := provisionDataSource(env, withCA); err == nil {
		t.Error("CLICKHOUSE_SECURE unset: the data source loaded; want the plugin's parse error")
	}
}

// pluginSettings is what grafana-clickhouse-datasource's LoadSettings takes from the data source.
type pluginSettings struct {
	Host, Username, Password, CACert string
	Port                             int64
	Secure, SkipVerify, WithCACert   bool
}

// provisionDataSource interpolates provisioning/datasources/clickhouse.yaml as Grafana's
// provisioning does and reads the values as the plugin does. It returns the first error.
func provisionDataSource(env map[string]string, readFile func(string) ([]byte, error)) (pluginSettings, error) {
	var s pluginSettings
	raw, err := fs.ReadFile(Files, "provisioning/datasources/clickhouse.yaml")
	if err != nil {
		return s, err
	}
	var file struct {
		Datasources []struct {
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil || len(file.Datasources) != 1 {
		return s, fmt.Errorf("provisioning file: %d data sources, %v", len(file.Datasources), err)
	}
	str := func(m map[string]any, key string) (string, error) {
		v, ok := m[key].(string)
		if !ok {
			return "", fmt.Errorf("jsonData.%s = %v: want a string (to interpolate)", key, m[key])
		}
		return grafanaInterpolate(v, env, readFile)
	}
	boolean := func(key string, dst *bool) error {
		v, err := str(file.Datasources[0].JSONData, key)
		if err == nil {
			*dst, err = strconv.ParseBool(v) // the plugin's parse of a string value
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	jd := file.Datasources[0].JSONData
	if s.Host, err = str(jd, "host"); err != nil {
		return s, err
	}
	if s.Username, err = str(jd, "username"); err != nil {
		return s, err
	}
	port, err := str(jd, "port")
	if err != nil {
		return s, err
	}
	if s.Port, err = strconv.ParseInt(port, 0, 64); err != nil {
		return s, fmt.Errorf("port: %w", err)
	}
	for key, dst := range map[string]*bool{"secure": &s.Secure, "tlsSkipVerify": &s.SkipVerify, "tlsAuthWithCACert": &s.WithCACert} {
		if err := boolean(key, dst); err != nil {
			return s, err
		}
	}
	sec := file.Datasources[0].SecureJSONData
	if s.Password, err = grafanaInterpolate(sec["password"], env, readFile); err != nil {
		return s, err
	}
	if s.CACert, err = grafanaInterpolate(sec["tlsCACert"], env, readFile); err != nil {
		return s, err
	}
	if s.WithCACert && s.CACert != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(s.CACert)) {
		return s, fmt.Errorf("tlsCACert: not a PEM certificate")
	}
	return s, nil
}

// grafanaExpander is Grafana's pattern for $__env{NAME}, $__file{path} and ${NAME}.
var grafanaExpander = regexp.MustCompile(`\$(|__\w+)\{([^}]+)\}`)

// grafanaInterpolate expands a provisioning value as Grafana 12 does (setting.ExpandVar, then
// os.ExpandEnv, on each part between "$$"): environment variables first, then $__file{path},
// whose content is trimmed; a file that cannot be read fails the whole provisioning file.
func grafanaInterpolate(v string, env map[string]string, readFile func(string) ([]byte, error)) (string, error) {
	parts := strings.Split(v, "$$")
	for i, part := range parts {
		var err error
		for _, expander := range []string{"env", "file"} {
			part = grafanaExpander.ReplaceAllStringFunc(part, func(m string) string {
				sub := grafanaExpander.FindStringSubmatch(m)
				switch {
				case expander == "env" && (sub[1] == "" || sub[1] == "__env"):
					return env[sub[2]]
				case expander == "file" && sub[1] == "__file":
					b, ferr := readFile(sub[2])
					if ferr != nil && err == nil {
						err = fmt.Errorf("$__file{%s}: %w", sub[2], ferr)
					}
					return strings.TrimSpace(string(b))
				}
				return m
			})
		}
		if err != nil {
			return "", err
		}
		parts[i] = os.Expand(part, func(name string) string { return env[name] })
	}
	return strings.Join(parts, "$"), nil
}

// now is the scenario's clock: a fixed instant, so that event times are reproducible.
var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// newScenario migrates a database of the test's own and fills it with a small story: acme
// rotates k-old to k-new and one of its jobs lingers on k-old; globex's k-rev is revoked and
// fails afterwards; k-glob is used from a new network in the last hour; a lingering finding, a
// firing alert, a revoke audit row, a notification, a dead letter and a detector run.
func newScenario(t *testing.T) driver.Conn {
	t.Helper()
	ctx := context.Background()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(ctx, conn); err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}

	rotated := now.Add(-3 * time.Hour)
	grace := now.Add(24 * time.Hour)
	revoked := now.Add(-2 * time.Hour)
	lb, err := conn.PrepareBatch(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []struct {
		ts                       time.Time
		typ, key, client, newKey string
		grace                    *time.Time
		reason                   string
	}{
		{now.Add(-30 * 24 * time.Hour), "key.created", "k-old", "acme", "", nil, ""},
		{now.Add(-30 * 24 * time.Hour), "key.created", "k-rev", "globex", "", nil, ""},
		{now.Add(-30 * 24 * time.Hour), "key.created", "k-glob", "globex", "", nil, ""},
		{rotated, "key.created", "k-new", "acme", "", nil, ""},
		{rotated, "key.rotation_started", "k-old", "acme", "k-new", &grace, "scheduled"},
		{revoked, "key.revoked", "k-rev", "globex", "", nil, "leaked"},
	} {
		if err := lb.Append(e.ts, e.typ, e.key, e.client, e.newKey, e.grace, e.reason, "key-lifecycle", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lb.Send(); err != nil {
		t.Fatal(err)
	}

	type ev struct {
		ts                           time.Time
		key, client, outcome, ip, ua string
		asn                          uint32
		country                      string
	}
	var evs []ev
	for ts := now.Add(-6 * time.Hour); ts.Before(now); ts = ts.Add(10 * time.Minute) {
		if ts.Before(rotated) {
			evs = append(evs, ev{ts, "k-old", "acme", "ok", "198.51.100.10", "acme-web/2.1", 64500, "DE"})
		} else {
			evs = append(evs, ev{ts, "k-new", "acme", "ok", "198.51.100.10", "acme-web/2.1", 64500, "DE"})
			evs = append(evs, ev{ts.Add(time.Minute), "k-old", "acme", "ok", "198.51.100.77", "acme-cron/0.9", 64500, "DE"})
		}
		if ts.Before(revoked) {
			evs = append(evs, ev{ts, "k-rev", "globex", "ok", "192.0.2.5", "globex/1.0", 64501, "FR"})
		} else {
			evs = append(evs, ev{ts, "k-rev", "globex", "revoked_key", "192.0.2.5", "globex/1.0", 64501, "FR"})
		}
		evs = append(evs, ev{ts, "k-glob", "globex", "ok", "192.0.2.9", "globex/1.0", 64501, "FR"})
	}
	for ts := now.Add(-50 * time.Minute); ts.Before(now); ts = ts.Add(5 * time.Minute) {
		evs = append(evs, ev{ts, "k-glob", "", "ok", "203.0.113.66", "curl/8.0", 64666, "BR"})
	}
	for d := 2; d <= 5; d++ {
		evs = append(evs, ev{now.Add(-time.Duration(d) * 24 * time.Hour), "k-glob", "globex", "ok", "192.0.2.9", "globex/1.0", 64501, "FR"})
	}
	eb, err := conn.PrepareBatch(ctx, `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		status := uint16(200)
		if e.outcome != "ok" {
			status = 401
		}
		ip := netip.MustParseAddr(e.ip).As16()
		if err := eb.Append(e.ts, e.key, "", e.client, e.outcome, status, ip, e.asn, fmt.Sprintf("AS%d Org", e.asn), e.country,
			e.ua, "GET", "/v1/prices", fmt.Sprintf("r-%d", i), "edge-test", "auth-events", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := eb.Send(); err != nil {
		t.Fatal(err)
	}

	at := now.Add(-time.Hour)
	exec(`INSERT INTO key_ip_hours (hour, key_id, distinct_ips) VALUES (?, 'k-glob', 1), (?, 'k-glob', 2)`,
		now.Add(-48*time.Hour), now.Add(-47*time.Hour))
	exec(`INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
	VALUES (?, 'run-1', 'lingering', 'fp-linger', 'warning', 0.8, 'k-old', 'acme', 'k-old>k-new', 'acme still calls k-old', '{}')`, at)
	exec(`INSERT INTO detector_runs (run_id, detector, started_at, finished_at, findings, error) VALUES ('run-1', 'lingering', ?, ?, 1, '')`,
		at, at.Add(time.Second))
	exec(`INSERT INTO alerts (fingerprint, detector, key_id, client_id, rotation_id, severity, score, summary, evidence, state,
	active_since, fired_at, resolved_at, last_seen, silenced, inhibited, action, updated_at, version)
	VALUES ('fp-linger', 'lingering', 'k-old', 'acme', 'k-old>k-new', 'warning', 0.8, 'acme still calls k-old', '{}', 'firing',
	?, ?, toDateTime64(0, 3), ?, '', '', '', ?, 1)`, at, at.Add(5*time.Minute), now, now)
	exec(`INSERT INTO action_audit (at, action_id, kind, key_id, client_id, alert_id, event, guardrail, actor, http_status, detail)
	VALUES (?, 'act-1', 'revoke', 'k-rev', 'globex', 'fp-leak@1', 'dry_run', '', 'keywatch', 0, 'dry run: would revoke k-rev')`, revoked)
	exec(`INSERT INTO notifications (group_key, channel, episode, notification_id, state, resolved, payload, content_hash, reply,
	reply_seq, ts, sent_hash, in_flight, inflight_hash, first_attempt_at, attempts, last_error, next_attempt_at, created_at, updated_at, version)
	VALUES ('lingering/acme', '#keys', 1, 'n-1', 'sent', 0, '{}', 'h1', '', 0, '1700000000.0001', 'h1', 0, '', ?, 1, '', ?, ?, ?, 1)`,
		at, at, at, at)
	exec(`INSERT INTO dead_letters (received_at, topic, partition, offset, reason, error, excerpt, size)
	VALUES (?, 'auth-events', 0, 9999, 'bad_json', 'unexpected end of JSON input', '{"ts":', 6)`, at)
	return conn
}

// newOf returns a pointer to a new value of the column's scan type.
func newOf(ct driver.ColumnType) any { return reflect.New(ct.ScanType()).Interface() }

// deref returns the value v points to.
func deref(v any) any {
	r := reflect.ValueOf(v).Elem()
	for r.Kind() == reflect.Pointer {
		if r.IsNil() {
			return nil
		}
		r = r.Elem()
	}
	return r.Interface()
}
