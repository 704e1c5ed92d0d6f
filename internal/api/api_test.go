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
			s := New("127.0.0.1:0", prometheus.NewRegistry(), tc.checks, V1{}, nil, slog.New(slog.DiscardHandler))
			rec := httptest.NewRecorder()
			s.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
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
	s := New("127.0.0.1:0", reg, nil, V1{}, nil, slog.New(slog.DiscardHandler))
	for path, want := range map[string]string{"/healthz": "ok\n", "/metrics": "keywatch_test_total 1"} {
		rec := httptest.NewRecorder()
		s.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %q, want 200 with %q", path, rec.Code, rec.Body.String(), want)
		}
	}
}
