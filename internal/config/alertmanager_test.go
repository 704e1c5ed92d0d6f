package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAlertmanagerURLsAreValidatedByPath(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"KEYWATCH_ALERTMANAGER_URLS=http://am-0:9093,alertmanager:9093", `alertmanager.urls[1]: "alertmanager:9093": want an http(s) URL`},
		{"KEYWATCH_ALERTMANAGER_URLS=ftp://am:21", `alertmanager.urls[0]: "ftp://am:21": want an http(s) URL`},
		{"KEYWATCH_ALERTMANAGER_URLS=https://kw:hunter2@am:9093", `alertmanager.urls[0]: "https://kw:xxxxx@am:9093": credentials do not belong in the URL`},
		{"KEYWATCH_ALERTMANAGER_URLS=http://am:9093?x=1", `alertmanager.urls[0]: "http://am:9093?x=1": want a base URL`},
		{"KEYWATCH_ALERTMANAGER_URLS=http://am:9093,http://am:9093", `alertmanager.urls[1]: "http://am:9093" is also alertmanager.urls[0]`},
		{"KEYWATCH_ALERTMANAGER_TIMEOUT=0s", "alertmanager.timeout: 0s: want 100ms to 5m"},
		{"KEYWATCH_ALERTMANAGER_USERNAME=keywatch", "alertmanager.password: alertmanager.username and the password (KEYWATCH_ALERTMANAGER_PASSWORD or alertmanager.password_file) go together"},
		{"KEYWATCH_ALERTMANAGER_PASSWORD=hunter2", "alertmanager.password: alertmanager.username and the password"},
	} {
		_, err := Load("", []string{validKey, c.env})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Load error = %v\nwant it to contain %q", c.env, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", c.env, err)
		}
	}
	cfg, err := Load(writeFile(t, "alertmanager:\n  urls: [http://am-0:9093, https://am-1.example.com/alertmanager/]\n"), []string{validKey})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://am-0:9093", "https://am-1.example.com/alertmanager/"}; !slices.Equal(cfg.Alertmanager.URLs, want) {
		t.Errorf("alertmanager.urls = %v, want %v", cfg.Alertmanager.URLs, want)
	}
}
