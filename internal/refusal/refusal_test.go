package refusal

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRefusalsAreCountedAndLoggedAFewAMinuteCutShort(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	l := New(reg, slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	long := "/v1/" + strings.Repeat("x", 900<<10)
	for range 50 {
		r := httptest.NewRequest("POST", "/", nil)
		r.URL.Path = long
		r.Header.Set("User-Agent", strings.Repeat("u", 1<<20))
		l.Refuse(r, "api", "missing or wrong token")
	}
	if got := testutil.ToFloat64(l.refused.WithLabelValues("api", "missing or wrong token")); got != 50 {
		t.Errorf("keywatch_http_refused_total = %v, want 50", got)
	}
	lines := strings.Count(buf.String(), "\n")
	if lines != LinesPerMinute {
		t.Errorf("%d lines logged for 50 refusals in a minute, want %d", lines, LinesPerMinute)
	}
	if max := LinesPerMinute * 1024; buf.Len() > max {
		t.Errorf("the log grew %d bytes for 50 refusals of ~1.9 MB each, want at most %d", buf.Len(), max)
	}
	// The next minute logs again and says how many were not logged.
	now = now.Add(time.Minute)
	buf.Reset()
	l.Refuse(httptest.NewRequest("GET", "/v1/silences", nil), "api", "missing or wrong token")
	if !strings.Contains(buf.String(), "not_logged_before=40") {
		t.Errorf("first line of the next minute: %q, want not_logged_before=40", buf.String())
	}
}

func TestCutKeepsRunesWhole(t *testing.T) {
	s := strings.Repeat("é", MaxField) // two bytes each
	got := Cut(s)
	if !strings.HasPrefix(got, strings.Repeat("é", MaxField/2)+"…") || !strings.HasSuffix(got, "(256 bytes)") {
		t.Errorf("Cut: %q", got)
	}
	if Cut("short") != "short" {
		t.Error("Cut changed a short value")
	}
}
