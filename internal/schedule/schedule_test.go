package schedule

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	for spec, want := range map[string]time.Time{
		"0 */5 * * * *":  at.Add(5 * time.Minute),
		"30 0 9 * * 1-5": time.Date(2026, 11, 23, 9, 0, 30, 0, time.UTC), // 2026-11-20 is a Friday
		"@every 90s":     at.Add(90 * time.Second),
		"@hourly":        at.Add(time.Hour),
	} {
		s, err := Parse(spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if got := s.Next(at); !got.Equal(want) {
			t.Errorf("%q: next after %s is %s, want %s", spec, at, got, want)
		}
	}
	for _, spec := range []string{"*/5 * * * *", "0 0 25 * * *", "@weekly-ish", ""} {
		if _, err := Parse(spec); err == nil {
			t.Errorf("%q parses", spec)
		}
	}
}

func TestCronRecoversAndLogs(t *testing.T) {
	var logs bytes.Buffer
	c := NewCron(slog.New(slog.NewTextHandler(&logs, nil)), "test cron")
	if c.Location() != time.UTC {
		t.Errorf("the scheduler runs in %s, want UTC", c.Location())
	}
	if _, err := c.AddFunc("*/5 * * * *", func() {}); err == nil {
		t.Error("a five-field schedule is accepted")
	}
	done := make(chan struct{})
	if _, err := c.AddFunc("@every 1s", func() { defer close(done); panic("boom") }); err != nil {
		t.Fatal(err)
	}
	c.Start()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not run")
	}
	<-c.Stop().Done()
	if out := logs.String(); !strings.Contains(out, `msg="test cron: panic"`) || !strings.Contains(out, "err=boom") {
		t.Errorf("the panic was logged as:\n%s", out)
	}
}
