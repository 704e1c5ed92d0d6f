package config

import (
	"strings"
	"testing"
	"time"
)

// TestLeakNewForAndLatenessValidated: new_for and allowed_lateness out of range fail with their
// paths named; the defaults pass.
func TestLeakNewForAndLatenessValidated(t *testing.T) {
	if errs := Default().Detect.validate(); len(errs) != 0 {
		t.Fatalf("defaults refused: %v", errs)
	}
	for _, tc := range []struct {
		newFor, lateness time.Duration
		want             string
	}{
		{newFor: 30 * time.Minute, lateness: 10 * time.Minute, want: "detect.leak.new_for: 30m0s: want 1h to 7d"},
		{newFor: 8 * 24 * time.Hour, lateness: 10 * time.Minute, want: "detect.leak.new_for: 192h0m0s: want 1h to 7d"},
		{newFor: 48 * time.Hour, lateness: -time.Minute, want: "detect.leak.allowed_lateness: -1m0s: want 0s to 24h"},
		{newFor: 48 * time.Hour, lateness: 25 * time.Hour, want: "detect.leak.allowed_lateness: 25h0m0s: want 0s to 24h"},
	} {
		cfg := Default()
		cfg.Detect.Leak.NewFor, cfg.Detect.Leak.AllowedLateness = Duration(tc.newFor), Duration(tc.lateness)
		var msgs []string
		for _, err := range cfg.Detect.validate() {
			msgs = append(msgs, err.Error())
		}
		if all := strings.Join(msgs, "\n"); !strings.Contains(all, tc.want) {
			t.Errorf("new_for %s, allowed_lateness %s: errors %q, want %q", tc.newFor, tc.lateness, all, tc.want)
		}
	}
	cfg := Default()
	cfg.Detect.Leak.Baseline = Duration(24 * time.Hour)
	if errs := cfg.Detect.validate(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "shorter than detect.leak.baseline") {
		t.Errorf("new_for 48h with a baseline of 24h: errors %v, want new_for refused", errs)
	}
}
