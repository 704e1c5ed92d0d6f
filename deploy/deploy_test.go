package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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
			return err // templates are rendered by helm in helm_test.go
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
		`go build -trimpath -ldflags "-s -w -X main.version=${VERSION}"`,
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
	if cfg.HTTP.Listen != ":8466" || cfg.HTTP.AdminListen != "127.0.0.1:8467" {
		t.Errorf("systemd example: http.listen = %q, http.admin_listen = %q; want :8466 and 127.0.0.1:8467", cfg.HTTP.Listen, cfg.HTTP.AdminListen)
	}
}
