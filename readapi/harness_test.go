package readapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/rotation"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// env is a migrated database of the test's own whose rollups ClickHouse's views fill from the
// events the test inserts, and the API over it at a fixed time.
type env struct {
	t    *testing.T
	conn driver.Conn
	api  *API
	mux  *http.ServeMux
	now  time.Time
	seq  int64
}

func newEnv(t *testing.T, now time.Time) *env {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	a := New(conn, detect.NewLingering(conn, config.Default().Detect.Lingering), nil)
	a.now = func() time.Time { return now }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keys/{id}", a.Key)
	mux.HandleFunc("GET /v1/rotations", a.Rotations)
	mux.HandleFunc("GET /v1/rotations/{id}", a.Rotation)
	mux.HandleFunc("GET /v1/alerts", a.Alerts)
	return &env{t: t, conn: conn, api: a, mux: mux, now: now}
}

// event is one authentication event as ingest stores it; zero fields take defaults.
type event struct {
	TS       time.Time
	KeyID    string
	ClientID string
	Outcome  string // default ok
	IP       string // default 198.51.100.10
	UA       string // default test-sdk/1.0
	ASN      uint32
	Country  string
}

func (e *env) events(evs []event) {
	e.t.Helper()
	b, err := e.conn.PrepareBatch(context.Background(), `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		status := uint16(200)
		if ev.Outcome == "" {
			ev.Outcome = "ok"
		} else if ev.Outcome != "ok" {
			status = 401
		}
		if ev.IP == "" {
			ev.IP = "198.51.100.10"
		}
		if ev.UA == "" {
			ev.UA = "test-sdk/1.0"
		}
		org := ""
		if ev.ASN != 0 {
			org = fmt.Sprintf("Org %d", ev.ASN)
		}
		e.seq++
		if err := b.Append(ev.TS, ev.KeyID, "", ev.ClientID, ev.Outcome, status, netip.MustParseAddr(ev.IP).As16(), ev.ASN, org, ev.Country,
			ev.UA, "GET", "/v1/prices", fmt.Sprintf("r-%d", e.seq), "edge-test", "auth-events", int32(0), e.seq); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		e.t.Fatal(err)
	}
}

// lifecycle stores lifecycle events as POST /v1/lifecycle does.
func (e *env) lifecycle(evs ...rotation.Event) {
	e.t.Helper()
	w := ingest.NewLifecycleWriter(e.conn)
	for _, ev := range evs {
		if err := w.StoreLifecycle(context.Background(), ev); err != nil {
			e.t.Fatal(err)
		}
	}
}

// hourly returns caller's calls with key at ten past every hour in [from, to].
func hourly(caller event, key string, from, to time.Time) []event {
	var out []event
	for h := from; !h.After(to); h = h.Add(time.Hour) {
		ev := caller
		ev.KeyID, ev.TS = key, h.Add(10*time.Minute)
		out = append(out, ev)
	}
	return out
}

// get answers GET path with the API: its status and body decoded into out (when 200).
func (e *env) get(path string, out any) (int, string) {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body := rec.Body.String()
	if rec.Code == http.StatusOK && out != nil {
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(out); err != nil {
			e.t.Fatalf("GET %s: decode %T: %v", path, out, err)
		}
	}
	return rec.Code, body
}
