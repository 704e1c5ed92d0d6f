package deploy

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/keywatch/keywatch/dashboards"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

// loadCompose loads docker-compose.yaml with compose-go, the loader of `docker compose config`
// and `up`: schema validation, interpolation of ${VAR} from env (only env: no shell, no .env),
// paths resolved against deploy/.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yaml"}, cli.WithEnv(list))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker compose config with %v: %v", list, err)
	}
	return p
}

// hostPath is where the file a service sees at containerPath comes from: a bind mount's source
// on this host, or a file in a named volume (namedVolumes maps a volume to a folder standing in
// for it). It fails the test when no mount holds the path.
func hostPath(t *testing.T, svc types.ServiceConfig, containerPath string, namedVolumes map[string]string) string {
	t.Helper()
	var best *types.ServiceVolumeConfig
	for i, v := range svc.Volumes {
		if containerPath == v.Target || strings.HasPrefix(containerPath, strings.TrimSuffix(v.Target, "/")+"/") {
			if best == nil || len(v.Target) > len(best.Target) { // the innermost mount wins
				best = &svc.Volumes[i]
			}
		}
	}
	if best == nil {
		t.Fatalf("service %s: no volume holds %s", svc.Name, containerPath)
	}
	rest := strings.TrimPrefix(containerPath, best.Target)
	switch best.Type {
	case types.VolumeTypeBind:
		return best.Source + rest
	case types.VolumeTypeVolume:
		dir, ok := namedVolumes[best.Source]
		if !ok {
			t.Fatalf("service %s: %s is in volume %s, which the test does not stand in for", svc.Name, containerPath, best.Source)
		}
		return dir + rest
	}
	t.Fatalf("service %s: %s is on a %s mount", svc.Name, containerPath, best.Type)
	return ""
}

// envOf returns a service's environment as interpolated; unset variables are absent.
func envOf(svc types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// grafanaVar is ${NAME} in a provisioning value: Grafana's environment variable NAME.
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// grafanaFile is the $__file{path} Grafana reads when it provisions the data source.
var grafanaFile = regexp.MustCompile(`\$__file\{([^}]+)\}`)

func TestComposeStack(t *testing.T) {
	ca, err := testbed.NewCA(t.TempDir(), "clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string // the shell's (or .env's) variables the compose file documents
		// what keywatch and Grafana must then use
		chHost, chPassword string
		chPort             int
		secure             bool
		caFile             string // the host's CA file both trust; "" none
	}{
		{name: "local stack", env: map[string]string{},
			chHost: "clickhouse", chPort: 9000, chPassword: "keywatch-local"},
		{name: "ClickHouse Cloud with a private CA", env: map[string]string{
			"CLICKHOUSE_HOST": "abc123.eu-west-1.aws.clickhouse.cloud", "CLICKHOUSE_PORT": "9440",
			"CLICKHOUSE_PASSWORD": "cloud-secret", "CLICKHOUSE_SECURE": "true",
			"CLICKHOUSE_CA_FILE": ca.CertFile, "CLICKHOUSE_TLS_WITH_CA_CERT": "true",
			"KEYWATCH_HTTP_TOKEN": "api-token-0123456789abcdef0123456789", "KEYWATCH_HTTP_WRITE_TOKEN": "write-token-0123456789abcdef0123456789",
			"KEYWATCH_HTTP_READ_TOKEN": "read-token-0123456789abcdef0123456789", "GF_ADMIN_PASSWORD": "grafana-secret", "KEYWATCH_VERSION": "v1.2.3",
		},
			chHost: "abc123.eu-west-1.aws.clickhouse.cloud", chPort: 9440, chPassword: "cloud-secret", secure: true, caFile: ca.CertFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := loadCompose(t, tc.env)
			checkComposeServices(t, p)
			cfg := checkComposeKeywatch(t, p)
			if got := cfg.ClickHouse.Addr; len(got) != 1 || got[0] != net.JoinHostPort(tc.chHost, strconv.Itoa(tc.chPort)) {
				t.Errorf("keywatch clickhouse.addr %v, want %s:%d", got, tc.chHost, tc.chPort)
			}
			if cfg.ClickHouse.Password != tc.chPassword || cfg.ClickHouse.Secure != tc.secure {
				t.Errorf("keywatch clickhouse: password %q secure %v, want %q %v", cfg.ClickHouse.Password, cfg.ClickHouse.Secure, tc.chPassword, tc.secure)
			}
			kw := p.Services["keywatch"]
			if tc.caFile == "" {
				if cfg.ClickHouse.TLS.CAFile != "" {
					t.Errorf("keywatch clickhouse.tls.ca_file = %q without CLICKHOUSE_CA_FILE", cfg.ClickHouse.TLS.CAFile)
				}
			} else if cfg.ClickHouse.TLS.CAFile != tc.caFile { // read through keywatch's mounts
				t.Errorf("keywatch clickhouse.tls.ca_file is %q on this host, want %s", cfg.ClickHouse.TLS.CAFile, tc.caFile)
			}
			for name, got := range map[string]string{
				"KEYWATCH_HTTP_TOKEN": cfg.HTTP.Token, "KEYWATCH_HTTP_WRITE_TOKEN": cfg.HTTP.WriteToken, "KEYWATCH_HTTP_READ_TOKEN": cfg.HTTP.ReadToken,
			} {
				if tok := tc.env[name]; got != tok {
					t.Errorf("keywatch %s gives %q, want %q", name, got, tok)
				} else if tok != "" && len(tok) < config.MinSecretLength {
					t.Errorf("the test's %s is shorter than %d characters", name, config.MinSecretLength)
				}
			}
			if v, want := kw.Build.Args["VERSION"], cmp.Or(tc.env["KEYWATCH_VERSION"], "compose"); v == nil || *v != want {
				t.Errorf("keywatch build arg VERSION = %v, want %s", v, want)
			}
			// ClickHouse credentials agree between the local server and keywatch.
			if a, b := envOf(p.Services["clickhouse"])["CLICKHOUSE_PASSWORD"], cfg.ClickHouse.Password; a != b {
				t.Errorf("clickhouse password %q, keywatch password %q", a, b)
			}
			if a := envOf(p.Services["clickhouse"])["CLICKHOUSE_USER"]; a != cfg.ClickHouse.Username {
				t.Errorf("clickhouse user %q, keywatch username %q", a, cfg.ClickHouse.Username)
			}
			if got, want := envOf(p.Services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"], cmp.Or(tc.env["GF_ADMIN_PASSWORD"], "admin"); got != want {
				t.Errorf("grafana admin password %q, want %q", got, want)
			}
			checkComposeGrafana(t, p, cfg, tc.caFile)
		})
	}
}

// checkComposeServices checks the services, their health checks and what keywatch waits for.
func checkComposeServices(t *testing.T, p *types.Project) {
	t.Helper()
	if p.Name != "keywatch" {
		t.Errorf("project name %q", p.Name)
	}
	for _, name := range []string{"kafka", "clickhouse", "grafana", "keywatch", "secrets"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	for _, name := range []string{"kafka", "clickhouse", "grafana"} {
		if hc := p.Services[name].HealthCheck; hc == nil || len(hc.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	if got := envOf(p.Services["kafka"])["KAFKA_PROCESS_ROLES"]; got != "broker,controller" {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES = %q, want broker,controller (KRaft)", got)
	}
	kw := p.Services["keywatch"]
	if kw.Build == nil || kw.Build.Dockerfile != "deploy/Dockerfile" || kw.Build.Context != filepath.Dir(p.WorkingDir) {
		t.Errorf("keywatch build %+v: want deploy/Dockerfile in the repository root", kw.Build)
	} else if _, err := os.Stat(filepath.Join(kw.Build.Context, kw.Build.Dockerfile)); err != nil {
		t.Error(err)
	}
	for dep, cond := range map[string]string{"kafka": "service_healthy", "clickhouse": "service_healthy", "secrets": "service_completed_successfully"} {
		if got := kw.DependsOn[dep].Condition; got != cond {
			t.Errorf("keywatch depends_on %s: condition %q, want %s", dep, got, cond)
		}
	}
	if !kw.ReadOnly || !slices.Contains(kw.CapDrop, "ALL") || !slices.Contains(kw.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("keywatch: read_only %v, cap_drop %v, security_opt %v", kw.ReadOnly, kw.CapDrop, kw.SecurityOpt)
	}
	// Every bind mount's source exists (docker would create a missing one as a directory).
	for _, svc := range p.Services {
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s mounts %s: %v", svc.Name, v.Source, err)
				}
			}
		}
	}
}

// checkComposeKeywatch checks that every KEYWATCH_* variable is a real setting and that together
// they load as `keywatch run` loads them, with each *_file setting read through the service's
// mounts. It returns the configuration.
func checkComposeKeywatch(t *testing.T, p *types.Project) config.Config {
	t.Helper()
	kw := p.Services["keywatch"]
	envMap := envOf(kw)
	if len(envMap) == 0 {
		t.Fatal("keywatch: no environment")
	}
	// The secrets service writes the fingerprint key into the keywatch-secrets volume.
	secretsDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(secretsDir, "fingerprint-key"), []byte(testFingerprintKey+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	valid := settingEnv(t)
	var env []string
	for name, val := range envMap {
		if !strings.HasPrefix(name, config.EnvPrefix) {
			t.Errorf("keywatch: %s is not a KEYWATCH_ variable", name)
			continue
		}
		if !valid[name] {
			t.Errorf("keywatch: %s is not a keywatch setting", name)
		}
		if strings.HasSuffix(name, "_FILE") && val != "" {
			val = hostPath(t, kw, val, map[string]string{"keywatch-secrets": secretsDir})
		}
		env = append(env, name+"="+val)
	}
	cfg, err := config.Load("", env)
	if err != nil {
		t.Fatalf("keywatch's compose environment is not a valid configuration: %v", err)
	}
	if cfg.Fingerprint.Key != testFingerprintKey || len(cfg.Kafka.Brokers) != 1 || cfg.Kafka.Brokers[0] != "kafka:9092" {
		t.Errorf("compose config: fingerprint set %v, brokers %v", cfg.Fingerprint.Key != "", cfg.Kafka.Brokers)
	}
	if cfg.HTTP.Listen != ":8466" || cfg.HTTP.AdminListen != ":8467" {
		t.Errorf("http.listen = %q, http.admin_listen = %q; want :8466 and :8467", cfg.HTTP.Listen, cfg.HTTP.AdminListen)
	}
	// The public listener is published on every interface of the host; the admin listener
	// (/metrics, /readyz's errors) on its loopback only.
	for _, l := range []struct {
		setting, addr string
		hostIPs       []string
	}{
		{"http.listen", cfg.HTTP.Listen, []string{"", "0.0.0.0"}},
		{"http.admin_listen", cfg.HTTP.AdminListen, []string{"127.0.0.1"}},
	} {
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("%s %q: %v", l.setting, l.addr, err)
			continue
		}
		var published []types.ServicePortConfig
		for _, pc := range kw.Ports {
			if strconv.Itoa(int(pc.Target)) == port {
				published = append(published, pc)
			}
		}
		if len(published) != 1 || published[0].Published != port || !slices.Contains(l.hostIPs, published[0].HostIP) {
			t.Errorf("keywatch publishes %s's port %s as %+v, want once, as %s, on host IP %q", l.setting, port, published, port, l.hostIPs)
		}
	}
	if len(kw.Ports) != 2 {
		t.Errorf("keywatch ports %+v: want the public and the admin listener's only", kw.Ports)
	}
	// A healthcheck, should the image ever gain a client, asks the admin listener.
	if hc := kw.HealthCheck; hc != nil && !hc.Disable && (!strings.Contains(strings.Join(hc.Test, " "), ":8467") || strings.Contains(strings.Join(hc.Test, " "), ":8466")) {
		t.Errorf("keywatch healthcheck %v: want the admin listener, :8467", hc.Test)
	}
	// The URLs the header lists for /metrics, /healthz and /readyz are the admin listener's.
	urls := regexp.MustCompile(`localhost:(\d+)/(metrics|healthz|readyz)`).FindAllStringSubmatch(string(read(t, "docker-compose.yaml")), -1)
	if len(urls) == 0 {
		t.Error("docker-compose.yaml names no URL of /metrics, /healthz or /readyz")
	}
	for _, m := range urls {
		if m[1] != "8467" {
			t.Errorf("docker-compose.yaml names %s: /%s is on the admin listener, port 8467", m[0], m[2])
		}
	}
	return cfg
}

// checkComposeGrafana checks Grafana's side: the provisioning and dashboards are mounted where
// Grafana and the provider look, every ${VAR} of the data source file is set to a value the
// plugin takes, and the data source makes the same ClickHouse and TLS choice as keywatch.
func checkComposeGrafana(t *testing.T, p *types.Project, cfg config.Config, caFile string) {
	t.Helper()
	gf := p.Services["grafana"]
	env := envOf(gf)
	if !strings.Contains(env["GF_INSTALL_PLUGINS"], "grafana-clickhouse-datasource") {
		t.Errorf("grafana: GF_INSTALL_PLUGINS = %q", env["GF_INSTALL_PLUGINS"])
	}
	var provider struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	raw, _ := dashboards.Files.ReadFile("provisioning/dashboards/keywatch.yaml")
	if err := yaml.Unmarshal(raw, &provider); err != nil || len(provider.Providers) != 1 {
		t.Fatalf("dashboards provisioning: %v", err)
	}
	repo := filepath.Dir(p.WorkingDir)
	for src, target := range map[string]string{
		"dashboards/provisioning": "/etc/grafana/provisioning",
		"dashboards":              provider.Providers[0].Options.Path,
	} {
		if got := hostPath(t, gf, target, nil); got != filepath.Join(repo, src) {
			t.Errorf("grafana sees %s from %s, want %s", target, got, src)
		}
	}

	var ds struct {
		Datasources []struct {
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	raw, _ = dashboards.Files.ReadFile("provisioning/datasources/clickhouse.yaml")
	if err := yaml.Unmarshal(raw, &ds); err != nil || len(ds.Datasources) != 1 {
		t.Fatalf("datasource provisioning: %v", err)
	}
	// Every ${VAR} is set (Grafana has no defaults), and jsonData's values are read as the
	// plugin reads them (it parses strings for numbers and booleans).
	values := map[string]any{}
	maps.Copy(values, ds.Datasources[0].JSONData)
	for k, v := range ds.Datasources[0].SecureJSONData {
		values["secureJsonData."+k] = v
	}
	jd := map[string]string{}
	for k, v := range values {
		s := fmt.Sprint(v)
		for _, m := range grafanaVar.FindAllStringSubmatch(s, -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("the data source's %s reads ${%s}; grafana's environment does not set it", k, m[1])
			}
		}
		jd[k] = grafanaVar.ReplaceAllStringFunc(s, func(m string) string { return env[m[2:len(m)-1]] })
	}
	port, err := strconv.Atoi(jd["port"])
	if err != nil {
		t.Errorf("grafana: port %q: %v", jd["port"], err)
	}
	flag := func(key string) bool {
		b, err := strconv.ParseBool(jd[key])
		if err != nil {
			t.Errorf("grafana: %s %q: %v", key, jd[key], err)
		}
		return b
	}
	host, kwPort, _ := net.SplitHostPort(cfg.ClickHouse.Addr[0])
	if jd["host"] != host || strconv.Itoa(port) != kwPort || jd["username"] != cfg.ClickHouse.Username {
		t.Errorf("grafana reads %s@%s:%d, keywatch %s@%s", jd["username"], jd["host"], port, cfg.ClickHouse.Username, cfg.ClickHouse.Addr[0])
	}
	if flag("secure") != cfg.ClickHouse.Secure || flag("tlsSkipVerify") != cfg.ClickHouse.TLS.InsecureSkipVerify {
		t.Errorf("grafana secure %s tlsSkipVerify %s; keywatch clickhouse.secure %v insecure_skip_verify %v",
			jd["secure"], jd["tlsSkipVerify"], cfg.ClickHouse.Secure, cfg.ClickHouse.TLS.InsecureSkipVerify)
	}
	if got := env["CLICKHOUSE_PASSWORD"]; got != cfg.ClickHouse.Password {
		t.Errorf("grafana's ClickHouse password %q, keywatch's %q", got, cfg.ClickHouse.Password)
	}

	// The CA: Grafana reads $__file{path} at start and refuses a missing file, so the path is
	// always mounted; it trusts it only with tlsAuthWithCACert, and then it is keywatch's CA.
	m := grafanaFile.FindStringSubmatch(ds.Datasources[0].SecureJSONData["tlsCACert"])
	if m == nil {
		t.Fatal("the data source has no tlsCACert from $__file{...}")
	}
	src := hostPath(t, gf, m[1], nil)
	if withCA := flag("tlsAuthWithCACert"); withCA != (caFile != "") {
		t.Errorf("grafana tlsAuthWithCACert %v with CLICKHOUSE_CA_FILE %q", withCA, caFile)
	} else if withCA && src != caFile {
		t.Errorf("grafana reads its CA from %s, want %s", src, caFile)
	} else if !withCA {
		if b, err := os.ReadFile(src); err != nil || len(strings.TrimSpace(string(b))) != 0 {
			t.Errorf("grafana's CA placeholder %s: %v, %d bytes (want an empty file)", src, err, len(b))
		}
	}
}
