package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

// The chart's tests run the real helm (`helm lint --strict`, `helm template`), built from the Go
// module proxy at the version the Makefile pins (testbed.Tool).
var helm = testbed.Tool{Name: "helm", Package: "helm.sh/helm/v4/cmd/helm", VersionVar: "HELM_VERSION", EnvVar: "HELM_BIN"}

const chartDir = "helm/keywatch"

// runHelm runs helm with configuration, cache and data folders of the test's own (nothing from
// ~/.config/helm) and returns its standard output, or an error with its standard error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm.Binary(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// chart is one `helm template` of the chart, decoded.
type chart struct {
	text   string
	docs   []map[string]any
	byKind map[string]map[string]any
}

func helmTemplate(t *testing.T, args ...string) chart {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "test", chartDir, "--namespace", "keywatch"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll([]byte(out))
	if err != nil {
		t.Fatalf("helm template output is not YAML: %v\n%s", err, out)
	}
	c := chart{text: out, docs: docs, byKind: map[string]map[string]any{}}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		if c.byKind[kind] != nil {
			t.Errorf("two objects of kind %s", kind)
		}
		c.byKind[kind] = d
	}
	return c
}

// source is the text helm rendered from one template file, as its "# Source:" section shows it.
func (c chart) source(t *testing.T, template string) string {
	t.Helper()
	for _, part := range strings.Split(c.text, "---\n# Source: ") {
		if body, ok := strings.CutPrefix(part, "keywatch/templates/"+template+"\n"); ok {
			return body
		}
	}
	t.Fatalf("helm template rendered no %s", template)
	return ""
}

func (c chart) pod() any       { return dig(c.byKind["Deployment"], "spec", "template") }
func (c chart) container() any { return dig(c.pod(), "spec", "containers", 0) }
func (c chart) env() []any     { l, _ := dig(c.container(), "env").([]any); return l }
func (c chart) configYAML() string {
	s, _ := dig(c.byKind["ConfigMap"], "data", "keywatch.yaml").(string)
	return s
}
func (c chart) podAnnotations() any { return dig(c.pod(), "metadata", "annotations") }
func (c chart) volumeMounts() []any { l, _ := dig(c.container(), "volumeMounts").([]any); return l }
func (c chart) volumes() []any      { l, _ := dig(c.pod(), "spec", "volumes").([]any); return l }
func (c chart) serviceAccount() any { return c.byKind["ServiceAccount"] }
func (c chart) checksum() string {
	s, _ := dig(c.podAnnotations(), "checksum/config").(string)
	return s
}
func (c chart) probe(name string) any { return dig(c.container(), name+"Probe") }
func (c chart) named(l []any, n string) any {
	for _, v := range l {
		if dig(v, "name") == n {
			return v
		}
	}
	return nil
}

// expect is what a rendering must show for its values.
type expect struct {
	port           int // the http port (config.http.listen)
	adminPort      int // the admin port (config.http.admin_listen); 0: none
	scheme         string
	serviceAccount string
	saAnnotations  map[string]string
	podScrape      bool // prometheus.io annotations on the pods (else on the Service)
}

func TestHelmLint(t *testing.T) {
	for _, values := range [][]string{nil, {"-f", "testdata/values-tls.yaml"}} {
		out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, values...)...)
		if err != nil {
			t.Error(err)
		} else if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
			t.Errorf("helm lint --strict %v:\n%s", values, out)
		}
	}
}

func TestHelmChartDefaults(t *testing.T) {
	c := helmTemplate(t)
	checkChart(t, c, expect{port: 8466, adminPort: 8467, scheme: "HTTP", serviceAccount: "test-keywatch", podScrape: true})

	// Replicas spread softly over zones, then nodes, each constraint selecting this release's pods.
	tsc, _ := dig(c.pod(), "spec", "topologySpreadConstraints").([]any)
	var keys []string
	for _, k := range tsc {
		keys = append(keys, fmt.Sprint(dig(k, "topologyKey")))
		if dig(k, "whenUnsatisfiable") != "ScheduleAnyway" || fmt.Sprint(dig(k, "labelSelector", "matchLabels")) != fmt.Sprint(dig(c.byKind["Deployment"], "spec", "selector", "matchLabels")) {
			t.Errorf("topology spread constraint %v: want ScheduleAnyway over the Deployment's pods", k)
		}
	}
	if !slices.Equal(keys, []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"}) {
		t.Errorf("topology spread over %v", keys)
	}

	// The ConfigMap's keywatch.yaml is a valid configuration given the required secret, and
	// with the three HTTP tokens the chart's Secrets may add.
	cfg := loadConfig(t, c.configYAML(), []string{"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey})
	if cfg.HTTP.Listen != ":8466" || cfg.HTTP.AdminListen != ":8467" || cfg.Kafka.Brokers[0] != "kafka:9092" || cfg.Kafka.TLS.Enabled || cfg.ClickHouse.Secure {
		t.Errorf("chart config: listen %q, admin_listen %q, brokers %v, kafka TLS %v, clickhouse secure %v",
			cfg.HTTP.Listen, cfg.HTTP.AdminListen, cfg.Kafka.Brokers, cfg.Kafka.TLS.Enabled, cfg.ClickHouse.Secure)
	}
	tokens := map[string]string{
		"KEYWATCH_HTTP_TOKEN":       "admin-token-0123456789abcdef0123456789",
		"KEYWATCH_HTTP_WRITE_TOKEN": "write-token-0123456789abcdef0123456789",
		"KEYWATCH_HTTP_READ_TOKEN":  "read-token-0123456789abcdef0123456789",
	}
	env := []string{"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey}
	for name, tok := range tokens {
		if len(tok) < config.MinSecretLength {
			t.Fatalf("%s: the test's token is shorter than %d", name, config.MinSecretLength)
		}
		env = append(env, name+"="+tok)
	}
	cfg = loadConfig(t, c.configYAML(), env)
	if cfg.HTTP.Token != tokens["KEYWATCH_HTTP_TOKEN"] || cfg.HTTP.WriteToken != tokens["KEYWATCH_HTTP_WRITE_TOKEN"] || cfg.HTTP.ReadToken != tokens["KEYWATCH_HTTP_READ_TOKEN"] {
		t.Errorf("chart config with the tokens: admin %q, write %q, read %q", cfg.HTTP.Token, cfg.HTTP.WriteToken, cfg.HTTP.ReadToken)
	}
	for name, want := range map[string]string{
		"KEYWATCH_HTTP_TOKEN":       "map[key:token name:keywatch-http optional:true]",
		"KEYWATCH_HTTP_WRITE_TOKEN": "map[key:write-token name:keywatch-http optional:true]",
		"KEYWATCH_HTTP_READ_TOKEN":  "map[key:read-token name:keywatch-http optional:true]",
	} {
		if ref := dig(c.named(c.env(), name), "valueFrom", "secretKeyRef"); fmt.Sprint(ref) != want {
			t.Errorf("%s from %v, want %s", name, ref, want)
		}
	}
	if len(c.volumeMounts()) != 2 || len(c.volumes()) != 2 {
		t.Errorf("default pod: mounts %v, volumes %v; want config and tmp only", c.volumeMounts(), c.volumes())
	}
}

// TestHelmChartTLS renders testdata/values-tls.yaml: Kafka TLS and SCRAM, ClickHouse TLS, HTTPS,
// an IAM role on the ServiceAccount, certificate files from extra volumes.
func TestHelmChartTLS(t *testing.T) {
	c := helmTemplate(t, "-f", "testdata/values-tls.yaml")
	checkChart(t, c, expect{port: 9443, adminPort: 9444, scheme: "HTTPS", serviceAccount: "keywatch-msk",
		saAnnotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/keywatch"}})

	// A constraint with its own labelSelector is kept as given.
	if got := fmt.Sprint(dig(c.pod(), "spec", "topologySpreadConstraints")); got != "[map[labelSelector:map[matchLabels:map[app.kubernetes.io/name:keywatch]] maxSkew:1 topologyKey:kubernetes.io/hostname whenUnsatisfiable:DoNotSchedule]]" {
		t.Errorf("topologySpreadConstraints %s", got)
	}

	// Every file keywatch.yaml names lies in a mounted extra volume; with those files in place
	// (a CA's certificates, standing in for the Secret and ConfigMap) the configuration loads.
	raw := c.configYAML()
	var tree any
	if err := yaml.Unmarshal([]byte(raw), &tree); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{} // path in the pod -> setting
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, v := range m {
			if s, ok := v.(string); ok && strings.HasSuffix(k, "_file") && s != "" {
				files[s] = prefix + k
			}
			walk(prefix+k+".", v)
		}
	}
	walk("", tree)
	if len(files) != 6 {
		t.Errorf("keywatch.yaml names %d files, want 6 (kafka CA, client cert and key, clickhouse CA, HTTPS cert and key): %v", len(files), files)
	}
	ca, err := testbed.NewCA(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Server("keywatch", "keywatch.keywatch.svc")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir() // stands for the pod's filesystem
	for _, p := range slices.Sorted(maps.Keys(files)) {
		var mount any
		for _, m := range c.volumeMounts() {
			if mp, _ := dig(m, "mountPath").(string); mp != "/etc/keywatch" && strings.HasPrefix(p, mp+"/") {
				mount = m
			}
		}
		if mount == nil {
			t.Errorf("%s = %s: no extraVolumeMount holds it", files[p], p)
			continue
		}
		if c.named(c.volumes(), dig(mount, "name").(string)) == nil {
			t.Errorf("%s: volume %v is mounted but not in the pod's volumes", p, dig(mount, "name"))
		}
		src := map[string]string{"ca.crt": ca.CertFile, "tls.crt": issued.CertFile, "tls.key": issued.KeyFile}[filepath.Base(p)]
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%s: no test file for %s", p, filepath.Base(p))
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o400); err != nil {
			t.Fatal(err)
		}
		raw = strings.ReplaceAll(raw, p, filepath.Join(root, p))
	}
	cfg := loadConfig(t, raw, []string{"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey, "KEYWATCH_KAFKA_SASL_PASSWORD=scram-secret"})
	if !cfg.Kafka.TLS.Enabled || cfg.Kafka.SASL.Mechanism != config.SASLScramSHA512 || cfg.Kafka.SASL.Password != "scram-secret" ||
		!cfg.ClickHouse.Secure || !cfg.HTTP.TLS.Enabled() || cfg.HTTP.Listen != "0.0.0.0:9443" || cfg.HTTP.AdminListen != "0.0.0.0:9444" {
		t.Errorf("chart config: kafka TLS %v SASL %q (password set %v), clickhouse secure %v, HTTPS %v on %q and %q",
			cfg.Kafka.TLS.Enabled, cfg.Kafka.SASL.Mechanism, cfg.Kafka.SASL.Password != "", cfg.ClickHouse.Secure, cfg.HTTP.TLS.Enabled(), cfg.HTTP.Listen, cfg.HTTP.AdminListen)
	}
}

// TestHelmChartWithoutAdminListener renders an empty or unset config.http.admin_listen: keywatch
// then serves /metrics, /healthz and /readyz on http.listen, so the pod has the http port alone
// and the probes and the scrape annotations use it.
func TestHelmChartWithoutAdminListener(t *testing.T) {
	for _, args := range [][]string{
		{"--set-string", "config.http.admin_listen="},
		{"--set", "config.http.admin_listen=null"}, // unset: keywatch's default, empty
		{"--set-string", "config.http.admin_listen=", "--set", "scrapeAnnotations.pod=false", "--set", "scrapeAnnotations.service=true"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			c := helmTemplate(t, args...)
			podScrape := !slices.Contains(args, "scrapeAnnotations.service=true")
			checkChart(t, c, expect{port: 8466, scheme: "HTTP", serviceAccount: "test-keywatch", podScrape: podScrape})
			cfg := loadConfig(t, c.configYAML(), []string{"KEYWATCH_FINGERPRINT_KEY=" + testFingerprintKey})
			if cfg.HTTP.Listen != ":8466" || cfg.HTTP.AdminListen != "" {
				t.Errorf("chart config: listen %q, admin_listen %q; want :8466 and none", cfg.HTTP.Listen, cfg.HTTP.AdminListen)
			}
		})
	}
}

// TestHelmChartConfigChecksum checks that the pods' checksum/config is the hash of the rendered
// ConfigMap: a configuration change rolls the pods, another change of values does not.
func TestHelmChartConfigChecksum(t *testing.T) {
	base := helmTemplate(t)
	sum := sha256.Sum256([]byte(strings.TrimRight(base.source(t, "configmap.yaml"), "\n") + "\n"))
	if got := base.checksum(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("checksum/config %q, want the sha256 of the rendered ConfigMap, %x", got, sum)
	}
	if got := helmTemplate(t, "--set", "config.log.level=debug").checksum(); got == base.checksum() {
		t.Error("config.log.level changed, checksum/config did not: the pods would not roll")
	}
	if got := helmTemplate(t, "--set", "replicaCount=3", "--set", "resources.limits.memory=2Gi").checksum(); got != base.checksum() {
		t.Error("checksum/config changed with replicaCount and resources, which are not the configuration")
	}
}

// TestHelmChartRefuses checks the values the chart refuses, with a message saying why.
func TestHelmChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "config.http.listen="}, "config.http.listen"},
		{[]string{"--set", "config.http.listen=localhost"}, `config.http.listen "localhost": want host:port`},
		{[]string{"--set", "config.http.listen=:http"}, `config.http.listen ":http": the port must be a number`},
		{[]string{"--set", "config.http.listen=:0"}, `config.http.listen ":0": the port must be 1 to 65535`},
		{[]string{"--set", "config.http.listen=127.0.0.1:8466"}, `config.http.listen "127.0.0.1:8466": a loopback address`},
		// The admin listener: the same checks, naming its setting, and a port of its own.
		{[]string{"--set", "config.http.admin_listen=localhost"}, `config.http.admin_listen "localhost": want host:port`},
		{[]string{"--set", "config.http.admin_listen=:metrics"}, `config.http.admin_listen ":metrics": the port must be a number`},
		{[]string{"--set", "config.http.admin_listen=:70000"}, `config.http.admin_listen ":70000": the port must be 1 to 65535`},
		{[]string{"--set", "config.http.admin_listen=127.0.0.1:8467"}, `config.http.admin_listen "127.0.0.1:8467": a loopback address`},
		{[]string{"--set", "config.http.admin_listen=[::1]:8467"}, `config.http.admin_listen "[::1]:8467": a loopback address`},
		{[]string{"--set", "config.http.admin_listen=0.0.0.0:8466"}, `config.http.admin_listen "0.0.0.0:8466": port 8466 is config.http.listen's too`},
		{[]string{"--set", "config.http.listen=:9000", "--set", "config.http.admin_listen=:9000"}, `config.http.admin_listen ":9000": port 9000 is config.http.listen's too`},
		{[]string{"--set-json", `extraVolumeMounts=[{"name":"ca","mountPath":"/etc/keywatch/tls"}]`}, "inside /etc/keywatch"},
	} {
		out, err := runHelm(t, append([]string{"template", "test", chartDir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template %v: %v, want an error saying %q\n%s", tc.args, err, tc.want, out)
		}
	}
	// Listening on every address or one, IPv4 or IPv6, the port is the same.
	for _, listen := range []string{"0.0.0.0:9000", "[::]:9000", "10.0.0.1:9000"} {
		c := helmTemplate(t, "--set-string", "config.http.listen="+listen)
		if got := dig(c.named(dig(c.container(), "ports").([]any), "http"), "containerPort"); fmt.Sprint(got) != "9000" {
			t.Errorf("listen %s: containerPort %v", listen, got)
		}
		c = helmTemplate(t, "--set-string", "config.http.admin_listen="+listen)
		if got := dig(c.named(dig(c.container(), "ports").([]any), "admin"), "containerPort"); fmt.Sprint(got) != "9000" {
			t.Errorf("admin_listen %s: containerPort %v", listen, got)
		}
	}
}

// checkChart checks what every rendering must show.
func checkChart(t *testing.T, c chart, want expect) {
	t.Helper()
	var chartYAML struct {
		Name       string `yaml:"name"`
		Version    string `yaml:"version"`
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(read(t, chartDir+"/Chart.yaml"), &chartYAML); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "ServiceAccount"} {
		if c.byKind[kind] == nil {
			t.Fatalf("no %s rendered", kind)
		}
	}
	// The standard labels on every object.
	wantLabels := map[string]string{
		"helm.sh/chart":                chartYAML.Name + "-" + chartYAML.Version,
		"app.kubernetes.io/name":       "keywatch",
		"app.kubernetes.io/instance":   "test",
		"app.kubernetes.io/version":    chartYAML.AppVersion,
		"app.kubernetes.io/managed-by": "Helm",
	}
	for _, d := range c.docs {
		name := dig(d, "metadata", "name")
		if d["kind"] != "ServiceAccount" && name != "test-keywatch" {
			t.Errorf("%v named %v, want test-keywatch", d["kind"], name)
		}
		for k, v := range wantLabels {
			if got := dig(d, "metadata", "labels", k); got != v {
				t.Errorf("%v %v: label %s = %v, want %s", d["kind"], name, k, got, v)
			}
		}
	}

	dep := c.byKind["Deployment"]
	pod, ctr := c.pod(), c.container()
	selector, _ := dig(dep, "spec", "selector", "matchLabels").(map[string]any)
	for k, v := range selector {
		if dig(pod, "metadata", "labels", k) != v {
			t.Errorf("the Deployment's selector %s=%v does not match its pods' labels %v", k, v, dig(pod, "metadata", "labels"))
		}
	}
	for what, sel := range map[string]any{
		"PodDisruptionBudget": dig(c.byKind["PodDisruptionBudget"], "spec", "selector", "matchLabels"),
		"Service":             dig(c.byKind["Service"], "spec", "selector"),
	} {
		if fmt.Sprint(sel) != fmt.Sprint(selector) {
			t.Errorf("%s selects %v, the Deployment %v", what, sel, selector)
		}
	}

	// The http port, from config.http.listen, is the Service's one target: the public listener.
	// The admin port, from config.http.admin_listen, is what the probes use and Prometheus
	// scrapes; without an admin listener the http port serves those too. HTTPS on both when
	// http.tls is set.
	ports, _ := dig(ctr, "ports").([]any)
	wantPorts := map[string]int{"http": want.port}
	probePort, scrapePort := "http", want.port
	if want.adminPort != 0 {
		wantPorts["admin"] = want.adminPort
		probePort, scrapePort = "admin", want.adminPort
	}
	if len(ports) != len(wantPorts) {
		t.Errorf("container ports %v, want %v", ports, wantPorts)
	}
	for name, n := range wantPorts {
		port := c.named(ports, name)
		if fmt.Sprint(dig(port, "containerPort")) != strconv.Itoa(n) || dig(port, "protocol") != "TCP" {
			t.Errorf("container port %s: %v, want %d/TCP", name, port, n)
		}
	}
	svcPorts, _ := dig(c.byKind["Service"], "spec", "ports").([]any)
	if len(svcPorts) != 1 {
		t.Errorf("the Service has ports %v, want the http port alone", svcPorts)
	}
	for _, sp := range svcPorts {
		if tp := dig(sp, "targetPort"); tp != "http" && fmt.Sprint(tp) != strconv.Itoa(want.port) {
			t.Errorf("the Service targets %v, want the container's http port %d, never the admin port", tp, want.port)
		}
	}
	for probe, path := range map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"} {
		get := dig(c.probe(probe), "httpGet")
		if dig(get, "path") != path || dig(get, "port") != probePort || dig(get, "scheme") != want.scheme {
			t.Errorf("%s probe %v, want GET %s on port %s, scheme %s", probe, get, path, probePort, want.scheme)
		}
	}
	if p, f := dig(c.probe("startup"), "periodSeconds"), dig(c.probe("startup"), "failureThreshold"); fmt.Sprint(p) != "5" || fmt.Sprint(f) != "60" {
		t.Errorf("startup probe: every %vs, %v failures: want 5 minutes' grace", p, f)
	}
	scrape := map[string]any{
		"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(scrapePort), "prometheus.io/path": "/metrics",
	}
	if want.scheme == "HTTPS" {
		scrape["prometheus.io/scheme"] = "https"
	}
	onPods, onService := c.podAnnotations(), dig(c.byKind["Service"], "metadata", "annotations")
	if !want.podScrape {
		onPods, onService = onService, onPods
	}
	for k, v := range scrape {
		if got := dig(onPods, k); got != v {
			t.Errorf("annotation %s = %v, want %v", k, got, v)
		}
		if dig(onService, k) != nil {
			t.Errorf("annotation %s on both the pods and the Service: Prometheus would scrape each pod twice", k)
		}
	}
	if dig(c.podAnnotations(), "prometheus.io/scheme") != nil && want.scheme != "HTTPS" {
		t.Error("prometheus.io/scheme set without HTTPS")
	}
	if len(c.checksum()) != 64 {
		t.Errorf("checksum/config = %q", c.checksum())
	}

	// Security contexts: the defaults are the secure ones.
	for _, check := range []struct {
		what      string
		got, want any
	}{
		{"pod runAsNonRoot", dig(pod, "spec", "securityContext", "runAsNonRoot"), true},
		{"pod runAsUser", dig(pod, "spec", "securityContext", "runAsUser"), 65532},
		{"pod seccompProfile", dig(pod, "spec", "securityContext", "seccompProfile", "type"), "RuntimeDefault"},
		{"readOnlyRootFilesystem", dig(ctr, "securityContext", "readOnlyRootFilesystem"), true},
		{"allowPrivilegeEscalation", dig(ctr, "securityContext", "allowPrivilegeEscalation"), false},
		{"capabilities dropped", fmt.Sprint(dig(ctr, "securityContext", "capabilities", "drop")), "[ALL]"},
		{"config arg", dig(ctr, "args", 1), "/etc/keywatch/keywatch.yaml"},
		{"config mount", dig(c.named(c.volumeMounts(), "config"), "mountPath"), "/etc/keywatch"},
		{"config volume", dig(c.named(c.volumes(), "config"), "configMap", "name"), "test-keywatch"},
		{"tmp volume", fmt.Sprint(dig(c.named(c.volumes(), "tmp"), "emptyDir")), "map[]"},
		{"resources", dig(ctr, "resources", "requests", "memory"), "256Mi"},
		// The ServiceAccount: the pods run as it, without the API token keywatch has no use for.
		{"serviceAccountName", dig(pod, "spec", "serviceAccountName"), want.serviceAccount},
		{"ServiceAccount name", dig(c.serviceAccount(), "metadata", "name"), want.serviceAccount},
		{"pod automountServiceAccountToken", dig(pod, "spec", "automountServiceAccountToken"), false},
		{"ServiceAccount automountServiceAccountToken", dig(c.serviceAccount(), "automountServiceAccountToken"), false},
	} {
		if fmt.Sprint(check.got) != fmt.Sprint(check.want) {
			t.Errorf("%s = %v, want %v", check.what, check.got, check.want)
		}
	}
	for k, v := range want.saAnnotations {
		if got := dig(c.serviceAccount(), "metadata", "annotations", k); got != v {
			t.Errorf("ServiceAccount annotation %s = %v, want %s", k, got, v)
		}
	}

	// Secrets come from existing Secrets under real setting names; only the fingerprint key is
	// required, and every secret setting is wired.
	valid := settingEnv(t)
	secretEnv := map[string]bool{}
	for _, e := range c.env() {
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
	if ref := dig(c.named(c.env(), "KEYWATCH_KAFKA_SASL_PASSWORD"), "valueFrom", "secretKeyRef"); fmt.Sprint(ref) != "map[key:sasl-password name:keywatch-kafka optional:true]" {
		t.Errorf("KEYWATCH_KAFKA_SASL_PASSWORD from %v", ref)
	}
}
