package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadyzNamesTheFailingCheck(t *testing.T) {
	cases := []struct {
		name     string
		checks   map[string]Check
		wantCode int
		want     map[string]string
	}{
		{"all ready", map[string]Check{"clickhouse": func(context.Context) error { return nil }}, 200, map[string]string{"clickhouse": "ok"}},
		{"one failing", map[string]Check{
			"clickhouse": func(context.Context) error { return nil },
			"ingest":     func(context.Context) error { return errors.New("not (yet) a member") },
		}, 503, map[string]string{"clickhouse": "ok", "ingest": "not (yet) a member"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
			s.SetChecks(tc.checks)
			rec := httptest.NewRecorder()
			s.admin.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.wantCode || len(got) != len(tc.want) {
				t.Fatalf("readyz: %d %v, want %d %v", rec.Code, got, tc.wantCode, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("readyz[%s] = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "keywatch_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	s := New(Options{Addr: "127.0.0.1:0", Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	for path, want := range map[string]string{"/healthz": "ok\n", "/-/healthy": "ok\n", "/metrics": "keywatch_test_total 1"} {
		rec := httptest.NewRecorder()
		s.public.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %q, want 200 with %q", path, rec.Code, rec.Body.String(), want)
		}
	}
}

func TestAppAnswersOnceServedAndChecksAreRateLimited(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	calls := 0
	s.SetChecks(map[string]Check{"clickhouse": func(context.Context) error { calls++; return errors.New("unreachable: connecting") }})
	do := func(method, path, token string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		s.public.Handler.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for range 5 {
		if code, body := do("GET", "/-/ready", ""); code != 503 || !strings.Contains(body, `"clickhouse":"not ready"`) {
			t.Fatalf("/-/ready: %d %s", code, body)
		}
	}
	if calls != 1 {
		t.Errorf("5 readiness requests ran the check %d times, want 1 (cached for %s)", calls, checkTTL)
	}
	if code, _ := do("POST", "/-/reload", "tok"); code != 503 {
		t.Errorf("/-/reload before the app is served: %d, want 503", code)
	}
	s.Serve(http.NotFoundHandler(), Tokens{Admin: "tok"})
	if code, body := do("GET", "/-/ready", "tok"); code != 503 || !strings.Contains(body, `"clickhouse":"unreachable: connecting"`) {
		t.Errorf("/-/ready with a token: %d %s, want the check's error", code, body)
	}
}

func TestEveryReusesAnAnswerForItsTTL(t *testing.T) {
	calls := 0
	c := Every(time.Hour, func(context.Context) error { calls++; return nil })
	for range 3 {
		_ = c(context.Background())
	}
	if calls != 1 {
		t.Errorf("3 calls within the TTL ran the check %d times, want 1", calls)
	}
}
