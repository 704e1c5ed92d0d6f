package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/keywatch/keywatch/dashboards"
	"github.com/keywatch/keywatch/internal/config"
)

const testFingerprintKey = "deploy-test-fingerprint-key-0123456789"

// settingEnv is every KEYWATCH_* variable that names a configuration value.
func settingEnv(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, f := range config.Describe(config.Default()) {
		out[f.Env] = true
	}
	return out
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := Files.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeAll parses every document of a YAML stream.
func decodeAll(raw []byte) ([]map[string]any, error) {
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return docs, err
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// dig follows keys (string for maps, int for lists) through decoded YAML.
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// loadConfig writes raw as a config file and loads it as `keywatch run` would.
func loadConfig(t *testing.T, raw string, env []string) config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keywatch.yaml")
	if err := os.WriteFile(p, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, env)
	if err != nil {
		t.Fatalf("config.Load of\n%s\n: %v", raw, err)
	}
	return cfg
}

func TestEveryYAMLFileParses(t *testing.T) {
	n := 0
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || strings.Contains(p, "/templates/") {
			return err // templates are parsed after rendering, in TestHelmChartRenders
		}
		n++
		docs, err := decodeAll(read(t, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if len(docs) == 0 {
			t.Errorf("%s: no YAML document", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 { // compose, Chart.yaml, values.yaml, systemd example
		t.Errorf("parsed %d YAML files, want at least 4", n)
	}
}

func TestDockerfile(t *testing.T) {
	df := string(read(t, "Dockerfile"))
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"ENV CGO_ENABLED=0",
		`go build -trimpath -tags nolauncher -ldflags "-s -w -X main.version=${VERSION}"`,
		"./cmd/keywatch",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		"EXPOSE 8466",
		`ENTRYPOINT ["/usr/local/bin/keywatch", "run"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if !strings.Contains(df, ":nonroot") {
		t.Error("Dockerfile: final image is not a :nonroot distroless image")
	}
}

// composeVar is ${NAME}, ${NAME:-default} as docker compose interpolates them.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

func TestComposeStack(t *testing.T) {
	docs, err := decodeAll(read(t, "docker-compose.yaml"))
	if err != nil || len(docs) != 1 {
		t.Fatalf("docker-compose.yaml: %d documents, %v", len(docs), err)
	}
	services, _ := docs[0]["services"].(map[string]any)
	for _, name := range []string{"kafka", "clickhouse", "grafana", "keywatch", "secrets"} {
		if services[name] == nil {
			t.Errorf("service %s missing", name)
		}
	}
	for _, name := range []string{"kafka", "clickhouse", "grafana"} {
		if dig(services, name, "healthcheck", "test") == nil {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	if got := dig(services, "kafka", "environment", "KAFKA_PROCESS_ROLES"); got != "broker,controller" {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES = %v, want broker,controller (KRaft)", got)
	}
	if got, _ := dig(services, "grafana", "environment", "GF_INSTALL_PLUGINS").(string); !strings.Contains(got, "grafana-clickhouse-datasource") {
		t.Errorf("grafana: GF_INSTALL_PLUGINS = %q", got)
	}
	var mounts []string
	for _, m := range dig(services, "grafana", "volumes").([]any) {
		mounts = append(mounts, m.(string))
	}
	// The dashboards land where the provisioning file's provider looks for them, and every
	// ${VAR} the data source file reads is set in Grafana's environment.
	var provider struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	raw, _ := dashboards.Files.ReadFile("provisioning/dashboards/keywatch.yaml")
	if err := yaml.Unmarshal(raw, &provider); err != nil || len(provider.Providers) != 1 {
		t.Fatalf("dashboards provisioning: %v", err)
	}
	for _, want := range []string{"../dashboards/provisioning:/etc/grafana/provisioning", "../dashboards:" + provider.Providers[0].Options.Path + ":"} {
		if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(m, want) }) {
			t.Errorf("grafana mounts %v, want %s", mounts, want)
		}
	}
	ds, _ := dashboards.Files.ReadFile("provisioning/datasources/clickhouse.yaml")
	for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(string(ds), -1) {
		if dig(services, "grafana", "environment", m[1]) == nil {
			t.Errorf("the data source reads ${%s}; grafana's environment does not set it", m[1])
		}
	}

	kw, _ := services["keywatch"].(map[string]any)
	if got := dig(kw, "build", "dockerfile"); got != "deploy/Dockerfile" {
		t.Errorf("keywatch build.dockerfile = %v", got)
	} else if _, err := Files.ReadFile("Dockerfile"); err != nil {
		t.Error(err)
	}
	wantDeps := map[string]string{"kafka": "service_healthy", "clickhouse": "service_healthy", "secrets": "service_completed_successfully"}
	for dep, cond := range wantDeps {
		if got := dig(kw, "depends_on", dep, "condition"); got != cond {
			t.Errorf("keywatch depends_on %s: condition %v, want %s", dep, got, cond)
		}
	}

	// Every KEYWATCH_* variable is a real setting, and together they make a valid configuration.
	valid := settingEnv(t)
	envMap, _ := kw["environment"].(map[string]any)
	if len(envMap) == 0 {
		t.Fatal("keywatch: no environment")
	}
	keyFile := filepath.Join(t.TempDir(), "fingerprint-key")
	if err := os.WriteFile(keyFile, []byte(testFingerprintKey+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	var env []string
	for name, v := range envMap {
		if !strings.HasPrefix(name, config.EnvPrefix) {
			t.Errorf("keywatch: %s is not a KEYWATCH_ variable", name)
			continue
		}
		if !valid[name] {
			t.Errorf("keywatch: %s is not a keywatch setting", name)
		}
		val := composeVar.ReplaceAllString(fmt.Sprint(v), "$2") // unset shell variables: the defaults
		if name == "KEYWATCH_FINGERPRINT_KEY_FILE" {
			val = keyFile // the secrets service's volume
		}
		env = append(env, name+"="+val)
	}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatalf("keywatch's compose environment is not a valid configuration: %v", err)
	}
	if cfg.Fingerprint.Key != testFingerprintKey || cfg.Kafka.Brokers[0] != "kafka:9092" || cfg.ClickHouse.Addr[0] != "clickhouse:9000" {
		t.Errorf("compose config: fingerprint set %v, brokers %v, clickhouse %v", cfg.Fingerprint.Key != "", cfg.Kafka.Brokers, cfg.ClickHouse.Addr)
	}
	if cfg.HTTP.Listen != ":8466" {
		t.Errorf("http.listen = %q, want :8466 (the published port)", cfg.HTTP.Listen)
	}
	// ClickHouse credentials agree between the server and keywatch.
	if a, b := dig(services, "clickhouse", "environment", "CLICKHOUSE_USER"), envMap["KEYWATCH_CLICKHOUSE_USERNAME"]; a != b {
		t.Errorf("clickhouse user %v, keywatch username %v", a, b)
	}
	if a, b := dig(services, "clickhouse", "environment", "CLICKHOUSE_PASSWORD"), envMap["KEYWATCH_CLICKHOUSE_PASSWORD"]; a != b {
		t.Errorf("clickhouse password %v, keywatch password %v", a, b)
	}
}

func TestSystemdUnitAndExamples(t *testing.T) {
	unit := string(read(t, "systemd/keywatch.service"))
	directives := map[string][]string{}
	for line := range strings.SplitSeq(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("keywatch.service: %q is not key=value", line)
			continue
		}
		directives[k] = append(directives[k], v)
	}
	for k, want := range map[string]string{
		"ExecStart":       "/usr/local/bin/keywatch run --config /etc/keywatch/keywatch.yaml",
		"EnvironmentFile": "/etc/keywatch/keywatch.env",
		"Restart":         "on-failure",
		"KillSignal":      "SIGTERM",
		"TimeoutStopSec":  "30",
		"DynamicUser":     "yes",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
	} {
		if !slices.Contains(directives[k], want) {
			t.Errorf("keywatch.service: %s=%v, want %s", k, directives[k], want)
		}
	}

	// The env file names only real settings, and the example config loads with them filled in.
	valid := settingEnv(t)
	var names []string
	for line := range strings.SplitSeq(string(read(t, "systemd/keywatch.env")), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		name, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(name, config.EnvPrefix) {
			continue
		}
		names = append(names, name)
		if !valid[name] {
			t.Errorf("keywatch.env: %s is not a keywatch setting", name)
		}
	}
	if !slices.Contains(names, "KEYWATCH_FINGERPRINT_KEY") {
		t.Errorf("keywatch.env names %v, not KEYWATCH_FINGERPRINT_KEY", names)
	}
	cfg := loadConfig(t, string(read(t, "systemd/keywatch.yaml")), []string{
		"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey, "KEYWATCH_CLICKHOUSE_PASSWORD=secret",
	})
	if cfg.HTTP.Listen != ":8466" {
		t.Errorf("systemd example: http.listen = %q", cfg.HTTP.Listen)
	}
}

// renderChart renders the chart's templates with text/template and a few sprig-like functions.
// It is a stand-in for `helm template`, not Helm: it checks what the templates here use.
func renderChart(t *testing.T, dir string) map[string]string {
	t.Helper()
	var chart, values map[string]any
	if err := yaml.Unmarshal(read(t, dir+"/Chart.yaml"), &chart); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(read(t, dir+"/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	data := map[string]any{
		"Chart":   map[string]any{"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
		"Values":  values,
		"Release": map[string]any{"Name": "test", "Namespace": "default", "Service": "Helm"},
	}
	empty := func(v any) bool {
		switch v := v.(type) {
		case nil:
			return true
		case string:
			return v == ""
		case bool:
			return !v
		case int:
			return v == 0
		case []any:
			return len(v) == 0
		case map[string]any:
			return len(v) == 0
		}
		return false
	}
	indent := func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	}
	tpl := template.New(dir).Option("missingkey=error")
	funcs := template.FuncMap{
		"include": func(string, any) (string, error) { return "", nil }, // replaced below
		"toYaml": func(v any) (string, error) {
			var b bytes.Buffer
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
		"quote": func(vs ...any) string {
			var out []string
			for _, v := range vs {
				out = append(out, fmt.Sprintf("%q", fmt.Sprint(v)))
			}
			return strings.Join(out, " ")
		},
		"default": func(d any, given ...any) any {
			if len(given) == 0 || empty(given[0]) {
				return d
			}
			return given[0]
		},
		"indent":  indent,
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"trunc": func(n int, s string) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"list":       func(vs ...any) []any { return vs },
	}
	tpl.Funcs(funcs)
	entries, err := fs.ReadDir(Files, dir+"/templates")
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, e := range entries {
		name := e.Name()
		if _, err := tpl.New(name).Parse(string(read(t, dir+"/templates/"+name))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(name, "_") && strings.HasSuffix(name, ".yaml") {
			outputs = append(outputs, name)
		}
	}
	tpl.Funcs(template.FuncMap{"include": func(name string, data any) (string, error) {
		var b strings.Builder
		err := tpl.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}})
	out := map[string]string{}
	for _, name := range outputs {
		var b strings.Builder
		if err := tpl.ExecuteTemplate(&b, name, data); err != nil {
			t.Fatalf("render %s: %v", name, err)
		}
		if strings.Contains(b.String(), "<no value>") {
			t.Errorf("%s renders <no value>:\n%s", name, b.String())
		}
		out[name] = b.String()
	}
	return out
}

func TestHelmChartRenders(t *testing.T) {
	const dir = "helm/keywatch"
	rendered := renderChart(t, dir)
	byKind := map[string]map[string]any{}
	for name, text := range rendered {
		docs, err := decodeAll([]byte(text))
		if err != nil {
			t.Fatalf("%s does not render to YAML: %v\n%s", name, err, text)
		}
		for _, d := range docs {
			kind, _ := d["kind"].(string)
			if kind == "" || d["apiVersion"] == nil || dig(d, "metadata", "name") != "test-keywatch" {
				t.Errorf("%s: kind %q, apiVersion %v, name %v", name, kind, d["apiVersion"], dig(d, "metadata", "name"))
			}
			byKind[kind] = d
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
		if byKind[kind] == nil {
			t.Errorf("no %s rendered", kind)
		}
	}
	dep := byKind["Deployment"]
	if dep == nil {
		t.FailNow()
	}
	pod := dig(dep, "spec", "template")
	c := dig(pod, "spec", "containers", 0)
	for _, check := range []struct {
		what string
		got  any
		want any
	}{
		{"liveness probe path", dig(c, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"readiness probe path", dig(c, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"container port", dig(c, "ports", 0, "containerPort"), 8466},
		{"readOnlyRootFilesystem", dig(c, "securityContext", "readOnlyRootFilesystem"), true},
		{"allowPrivilegeEscalation", dig(c, "securityContext", "allowPrivilegeEscalation"), false},
		{"pod runAsNonRoot", dig(pod, "spec", "securityContext", "runAsNonRoot"), true},
		{"scrape annotation", dig(pod, "metadata", "annotations", "prometheus.io/scrape"), "true"},
		{"scrape port", dig(pod, "metadata", "annotations", "prometheus.io/port"), "8466"},
		{"config arg", dig(c, "args", 1), "/etc/keywatch/keywatch.yaml"},
		{"config mount", dig(c, "volumeMounts", 0, "mountPath"), "/etc/keywatch"},
		{"config volume", dig(pod, "spec", "volumes", 1, "configMap", "name"), "test-keywatch"},
		{"selector matches pods", fmt.Sprint(dig(dep, "spec", "selector", "matchLabels")), fmt.Sprint(dig(pod, "metadata", "labels"))},
		{"PDB selector", fmt.Sprint(dig(byKind["PodDisruptionBudget"], "spec", "selector", "matchLabels")), fmt.Sprint(dig(pod, "metadata", "labels"))},
		{"service selector", fmt.Sprint(dig(byKind["Service"], "spec", "selector")), fmt.Sprint(dig(pod, "metadata", "labels"))},
		{"resources", dig(c, "resources", "requests", "memory"), "256Mi"},
	} {
		if fmt.Sprint(check.got) != fmt.Sprint(check.want) {
			t.Errorf("%s = %v, want %v", check.what, check.got, check.want)
		}
	}

	// Secrets come from existing Secrets under real setting names; only the fingerprint key is required.
	valid := settingEnv(t)
	secretEnv := map[string]bool{}
	for _, e := range dig(c, "env").([]any) {
		name, _ := dig(e, "name").(string)
		if !valid[name] {
			t.Errorf("deployment env %s is not a keywatch setting", name)
		}
		if dig(e, "valueFrom", "secretKeyRef", "name") == nil {
			t.Errorf("deployment env %s is not from a Secret", name)
			continue
		}
		secretEnv[name] = true
		if opt := dig(e, "valueFrom", "secretKeyRef", "optional"); opt != (name != "KEYWATCH_FINGERPRINT_KEY") {
			t.Errorf("%s: optional = %v", name, opt)
		}
	}
	for _, f := range config.Describe(config.Default()) {
		if f.Secret && !secretEnv[f.Env] {
			t.Errorf("secret %s (%s) is not wired to a Secret", f.Path, f.Env)
		}
	}

	// The ConfigMap's keywatch.yaml is a valid configuration given the secrets.
	raw, _ := dig(byKind["ConfigMap"], "data", "keywatch.yaml").(string)
	if raw == "" {
		t.Fatal("ConfigMap has no keywatch.yaml")
	}
	cfg := loadConfig(t, raw, []string{"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey})
	if cfg.HTTP.Listen != ":8466" || cfg.Kafka.Brokers[0] != "kafka:9092" {
		t.Errorf("chart config: listen %q, brokers %v", cfg.HTTP.Listen, cfg.Kafka.Brokers)
	}
	if path.Base(dir) != dig(byKind["Deployment"], "metadata", "labels", "app.kubernetes.io/name") {
		t.Errorf("name label %v", dig(byKind["Deployment"], "metadata", "labels", "app.kubernetes.io/name"))
	}
}
