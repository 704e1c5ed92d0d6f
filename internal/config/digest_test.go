package config

import (
	"strings"
	"testing"
)

func TestDigestScheduleNeedsFixedTimes(t *testing.T) {
	for _, c := range []struct {
		schedule, nudge string
		wantErr         string
	}{
		{"0 0 9 * * 1-5", "@every 1m", ""},
		{"@every 24h", "", "digest.schedule: \"@every 24h\": @every has no fixed times"},
		{"0 0 9 * *", "", "digest.schedule"},
		{"", "0 */5 * * * *", ""},
	} {
		d := defaultDigest()
		d.Schedule, d.NudgeSchedule = c.schedule, c.nudge
		errs := d.validate()
		switch {
		case c.wantErr == "" && len(errs) > 0:
			t.Errorf("%q/%q: %v", c.schedule, c.nudge, errs)
		case c.wantErr != "" && (len(errs) == 0 || !strings.Contains(errs[0].Error(), c.wantErr)):
			t.Errorf("%q/%q: errors %v, want one with %q", c.schedule, c.nudge, errs, c.wantErr)
		}
	}
}
