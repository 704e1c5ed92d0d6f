package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebhooks(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(yaml string) (Config, error) {
		path := filepath.Join(dir, "keywatch.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(path, []string{validKey})
	}
	cfg, err := load("webhooks:\n  - name: ops\n    url: https://hooks.example.com/keywatch\n    secret_file: " + good + "\n    events: [alert.*]\n")
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Webhooks[0]; w.Secret != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" || w.AttemptTimeout() != DefaultWebhookTimeout || w.DeliveryMaxAge() != DefaultWebhookMaxAge {
		t.Errorf("endpoint %+v: want the file's secret and the default timeout and max_age", w)
	}
	for _, f := range Describe(cfg) {
		if f.Path == "webhooks" && (strings.Contains(f.Value, "whsec_") || !strings.Contains(f.Value, "ops")) {
			t.Errorf("check-config shows webhooks as %s: want the endpoint without its secret", f.Value)
		}
	}
	for _, c := range []struct{ yaml, want string }{
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    secret_file: " + good + "\n", "field secret not found"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret_file: " + good + "\n  - name: ops\n    url: ftp://x\n    secret_file: " + good + "\n", "webhooks[1].url"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret_file: " + good + "\n  - name: ops\n    url: https://x.example\n    secret_file: " + good + "\n", "webhooks[1].name: \"ops\": webhooks[0] has the same name"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n", "webhooks[0].secret_file: required"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret_file: " + bad + "\n", "webhooks[0].secret_file: " + bad + " does not hold a Standard Webhooks secret"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret_file: " + good + "\n    events: [\"alert.[\"]\n", "webhooks[0].events[0]"},
		{"webhooks:\n  - name: ops\n    url: https://x.example\n    secret_file: " + good + "\n    max_age: -1h\n", "webhooks[0].max_age"},
	} {
		if _, err := load(c.yaml); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one with %q", c.yaml, err, c.want)
		}
	}
}
