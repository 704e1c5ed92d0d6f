package detect

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/rotation"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// scenario is a migrated database of the test's own, filled with synthetic traffic over days of
// event time. Rows go straight into auth_events and key_lifecycle_events, as ingest would store
// them; the materialized views build the rollups the detectors read.
type scenario struct {
	t    *testing.T
	conn driver.Conn
	db   string
	cfg  config.Detect
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	db, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, conn: conn, db: db, cfg: config.Default().Detect}
}

// event is one synthetic authentication event; zero fields take plausible defaults.
type event struct {
	TS       time.Time
	KeyID    string
	ClientID string
	Outcome  string // default ok
	Status   uint16 // default from outcome
	IP       string // default 198.51.100.10
	UA       string // default test-sdk/1.0
	ASN      uint32
	ASOrg    string
	Country  string
	Method   string // default GET
	Route    string // default /v1/prices
}

var statusOf = map[string]uint16{"ok": 200, "invalid_key": 401, "expired_key": 401, "revoked_key": 401, "forbidden": 403, "rate_limited": 429, "error": 500}

// events inserts evs in one batch.
func (s *scenario) events(evs []event) {
	s.t.Helper()
	ctx := context.Background()
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		s.t.Fatal(err)
	}
	for i, e := range evs {
		if e.Outcome == "" {
			e.Outcome = "ok"
		}
		if e.Status == 0 {
			e.Status = statusOf[e.Outcome]
		}
		if e.IP == "" {
			e.IP = "198.51.100.10"
		}
		if e.UA == "" {
			e.UA = "test-sdk/1.0"
		}
		if e.Method == "" {
			e.Method = "GET"
		}
		if e.Route == "" {
			e.Route = "/v1/prices"
		}
		ip := netip.MustParseAddr(e.IP)
		if err := b.Append(e.TS, e.KeyID, "", e.ClientID, e.Outcome, e.Status, ip.As16(), e.ASN, e.ASOrg, e.Country,
			e.UA, e.Method, e.Route, "r-"+e.TS.Format("150405.000"), "edge-test", "auth-events", int32(0), int64(i)); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		s.t.Fatal(err)
	}
}

// lifecycle inserts lifecycle events.
func (s *scenario) lifecycle(evs ...rotation.Event) {
	s.t.Helper()
	ctx := context.Background()
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset, expires_at)`)
	if err != nil {
		s.t.Fatal(err)
	}
	for i, e := range evs {
		var grace, expires *time.Time
		if !e.GraceUntil.IsZero() {
			grace = &e.GraceUntil
		}
		if !e.ExpiresAt.IsZero() {
			expires = &e.ExpiresAt
		}
		if err := b.Append(e.TS, e.Type, e.KeyID, e.ClientID, e.NewKeyID, grace, e.Reason, "key-lifecycle", int32(0), int64(i), expires); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		s.t.Fatal(err)
	}
}

// every returns one event per interval in [from, to), made by fn (which may return false to skip).
func every(from, to time.Time, interval time.Duration, fn func(t time.Time) (event, bool)) []event {
	var out []event
	for ts := from; ts.Before(to); ts = ts.Add(interval) {
		if e, ok := fn(ts); ok {
			e.TS = ts
			out = append(out, e)
		}
	}
	return out
}

// now is the scenarios' clock: a fixed instant, so that event times are reproducible.
var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
