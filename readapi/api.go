package readapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/internal/api"
	"github.com/keywatch/keywatch/rotation"
)

// Readiness answers whether a key is safe to retire with the rotation model already read
// (detect.Lingering).
type Readiness interface {
	ReadinessIn(ctx context.Context, m *rotation.Model, now time.Time, keyID string) (detect.Readiness, error)
}

// API serves the read-only resources. Its handlers expect the router to have checked the bearer
// token and, for GET /v1/keys/{id}, the key id.
type API struct {
	conn      driver.Conn
	models    *rotation.Models
	readiness Readiness
	alerts    *alerting.Reader
	log       *slog.Logger
	now       func() time.Time
}

// New returns the API over conn (a migrated database).
func New(conn driver.Conn, readiness Readiness, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{
		conn: conn, models: rotation.NewModels(conn), readiness: readiness, alerts: alerting.NewReader(conn),
		log: log.With("component", "readapi"), now: time.Now,
	}
}

// unavailable answers 503 for a read that failed, and logs why.
func (a *API) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("read API", "path", r.URL.Path, "err", err)
	api.WriteError(w, http.StatusServiceUnavailable, "ClickHouse did not answer the read; try again")
}

// ptime is t, or nil when t is zero: absent from the JSON.
func ptime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// share is part / (part + other), 0 when both are 0, rounded to 4 decimals.
func share(part, other uint64) float64 {
	if part+other == 0 {
		return 0
	}
	return float64(int64(float64(part)/float64(part+other)*10000+0.5)) / 10000
}
