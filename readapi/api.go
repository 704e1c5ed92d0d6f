package readapi

import (
	"context"
	"errors"
	"fmt"
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
// token; they check ids and query parameters themselves (the router checks GET /v1/keys/{id}'s id
// as well). Its functions (KeyOf, RotationList, RotationOf) build the same resources for a caller
// in the process, such as the web console.
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

// The errors the functions return for a request no resource answers; test them with errors.Is.
// Any other error is a read that failed (ClickHouse did not answer), which the handlers answer 503.
var (
	// ErrNotFound is returned for a key or rotation keywatch knows nothing of (the handlers answer 404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest is returned for an id or a limit that names no resource (the handlers answer 400):
	// a key id ingest.ValidateID refuses, a rotation id not of the form old_key_id>new_key_id.
	ErrBadRequest = errors.New("bad request")
)

// refusal is why a request names no resource: kind (ErrNotFound or ErrBadRequest) and the reason,
// which the handlers answer alone (the answers keep the words they had before the functions did
// the checks) and which wraps what the check returned (an *ingest.DecodeError for an id).
type refusal struct {
	kind   error
	reason error
}

func (e *refusal) Error() string   { return e.reason.Error() + ": " + e.kind.Error() }
func (e *refusal) Unwrap() []error { return []error{e.kind, e.reason} }

func badRequest(reason error) error { return &refusal{ErrBadRequest, reason} }

func notFound(format string, args ...any) error {
	return &refusal{ErrNotFound, fmt.Errorf(format, args...)}
}

// fail answers err of a function: 400 or 404 with the reason of a refusal, else 503.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ref *refusal
	if !errors.As(err, &ref) {
		a.unavailable(w, r, err)
		return
	}
	code := http.StatusNotFound
	if ref.kind == ErrBadRequest {
		code = http.StatusBadRequest
	}
	api.WriteError(w, code, ref.reason.Error())
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
