package config

import (
	"strings"
	"testing"
	"time"
)

// TestFileSilencesAreBounded: the file's silences follow the rules of POST /v1/silences: they end
// at most alerting.silence_max_duration after they start, and select something.
func TestFileSilencesAreBounded(t *testing.T) {
	soon := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
	silence := func(matchers, startsAt, endsAt string) string {
		s := "alerting:\n  silences:\n    - matchers: " + matchers + "\n      ends_at: " + endsAt + "\n      created_by: ana\n      comment: migration\n"
		if startsAt != "" {
			s += "      starts_at: " + startsAt + "\n"
		}
		return s
	}
	cases := []struct {
		name, yaml string
		env        []string
		want       string // "": loads
	}{
		{name: "within the default", yaml: silence("{key_id: kid_old}", "", soon)},
		{name: "30 days exactly", yaml: silence("{key_id: kid_old}", "2030-01-01T00:00:00Z", "2030-01-31T00:00:00Z")},
		{name: "year 9999", yaml: silence("{key_id: kid_old}", "", "9999-12-31T00:00:00Z"),
			want: "alerting.silences[0].ends_at: 9999-12-31T00:00:00Z is more than alerting.silence_max_duration (720h0m0s) after now (it has no starts_at)"},
		{name: "a day too long", yaml: silence("{key_id: kid_old}", "2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z"),
			want: "alerting.silences[0].ends_at: 2030-02-01T00:00:00Z is more than alerting.silence_max_duration (720h0m0s) after starts_at 2030-01-01T00:00:00Z"},
		{name: "a shorter limit", yaml: silence("{key_id: kid_old}", "", soon), env: []string{"KEYWATCH_ALERTING_SILENCE_MAX_DURATION=1h"},
			want: "is more than alerting.silence_max_duration (1h0m0s) after now"},
		{name: "every key", yaml: silence(`{key_id: "*"}`, "", soon),
			want: `alerting.silences[0].matchers: {key_id: "*"} matches every alert: give at least one label that is not *`},
		{name: "only wildcards", yaml: silence(`{key_id: "*", detector: "**"}`, "", soon),
			want: `alerting.silences[0].matchers: {detector: "**", key_id: "*"} matches every alert`},
		{name: "a wildcard and a label", yaml: silence(`{key_id: "*", detector: lingering}`, "", soon)},
		{name: "after 2262", yaml: silence("{key_id: kid_old}", "2300-01-01T00:00:00Z", "2300-01-02T00:00:00Z"),
			want: "alerting.silences[0].starts_at: 2300-01-01T00:00:00Z: want a time before 2262-01-01"},
		{name: "no limit", env: []string{"KEYWATCH_ALERTING_SILENCE_MAX_DURATION=0s"},
			want: "alerting.silence_max_duration: 0s: want a positive duration such as 720h (30 days)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeFile(t, tc.yaml), append([]string{validKey}, tc.env...))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error = %v\nwant it to contain %q", err, tc.want)
			case tc.want == "" && cfg.Alerting.SilenceMaxDuration != DefaultSilenceMaxDuration:
				t.Fatalf("alerting.silence_max_duration = %s, want the default %s", cfg.Alerting.SilenceMaxDuration, DefaultSilenceMaxDuration)
			}
		})
	}
}
