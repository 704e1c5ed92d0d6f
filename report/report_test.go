package report

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/rotation"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// until is the scenario's report instant; the window is the 90 days before it.
var (
	until = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	since = until.Add(-90 * 24 * time.Hour) // 2026-08-22T12:00:00Z
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// caller is one synthetic caller: a client, or an IP and user agent with no client.
type caller struct{ client, ip, ua string }

var (
	acmeWeb   = caller{"acme-web", "192.0.2.1", "acme-sdk/2.0"}
	acmeBatch = caller{"acme-batch", "198.51.100.77", "acme-batch/1.0"}
	acmeCron  = caller{"acme-cron", "198.51.100.78", "cron/1.0"}
	acmeOld   = caller{"acme-legacy", "198.51.100.79", "legacy/0.9"}
	curl      = caller{"", "203.0.113.9", "curl/8.4"}
	globexApp = caller{"globex-app", "192.0.2.50", "globex/3.1"}
)

// calls is one call of c with key every interval in [from, to).
type calls struct {
	c        caller
	key      string
	from, to string
	interval time.Duration
}

// scenario is three clients' keys over the 90-day window, with what the report must say about each:
//
//   - acme: kid_a (created before the window, version 3) rotated to kid_b from 09-01 to 09-03 12:00 (2d12h). Its
//     stragglers at retirement: acme-batch (never moved, still calling after), curl with no client
//     (moved 15 min before the retirement, within quiet_for) and acme-cron (called it once during the
//     rotation, never moved). acme-web moved a day before: no straggler; acme-legacy called only
//     before the rotation started. One extend_grace rollback of kid_a was sent. kid_b rotates to kid_c
//     since 11-10 (running) and had one rollback sent and one refused. kid_c's rotation to kid_d starts
//     after the window's end: kid_c is active, kid_d not yet created.
//   - globex: kid_g1 revoked by keywatch (sent revoke, then the key-management system's key.revoked:
//     one revoke); kid_g2 revoked in the key-management system directly (one revoke); kid_g3 rotated
//     to kid_g4 with its only client moved well before the retirement (no stragglers); a dry-run
//     revoke of kid_g3 is not counted.
//   - initech: kid_i2 retired before the window (left out); kid_i3 active since 04-01, expired 10-01.
func seed(t *testing.T, conn driver.Conn) {
	t.Helper()
	ev := func(ts, typ, key, client string) rotation.Event {
		return rotation.Event{TS: at(ts), Type: typ, KeyID: key, ClientID: client}
	}
	start := func(ts, key, client, newKey, grace string) rotation.Event {
		e := ev(ts, rotation.KeyRotationStarted, key, client)
		e.NewKeyID, e.GraceUntil, e.Reason = newKey, at(grace), "scheduled rotation"
		return e
	}
	created := func(ts, key, client, version, expires string) rotation.Event {
		e := ev(ts, rotation.KeyCreated, key, client)
		e.Version, e.ExpiresAt = version, at(expires)
		return e
	}
	lifecycle(t, conn,
		created("2026-05-01T00:00:00Z", "kid_a", "acme", "3", "2026-11-01T00:00:00Z"),
		start("2026-09-01T00:00:00Z", "kid_a", "acme", "kid_b", "2026-09-08T00:00:00Z"),
		ev("2026-09-03T12:00:00Z", rotation.KeyRetired, "kid_a", "acme"),
		start("2026-11-10T00:00:00Z", "kid_b", "acme", "kid_c", "2026-11-25T00:00:00Z"),
		start("2026-11-22T00:00:00Z", "kid_c", "acme", "kid_d", "2026-11-29T00:00:00Z"),

		ev("2026-10-01T00:00:00Z", rotation.KeyCreated, "kid_g1", "globex"),
		ev("2026-10-15T10:00:05Z", rotation.KeyRevoked, "kid_g1", "globex"),
		ev("2026-06-01T00:00:00Z", rotation.KeyCreated, "kid_g2", "globex"),
		ev("2026-09-10T00:00:00Z", rotation.KeyRevoked, "kid_g2", "globex"),
		ev("2026-06-01T00:00:00Z", rotation.KeyCreated, "kid_g3", "globex"),
		start("2026-10-01T00:00:00Z", "kid_g3", "globex", "kid_g4", "2026-10-08T00:00:00Z"),
		ev("2026-10-02T06:00:00Z", rotation.KeyRetired, "kid_g3", "globex"),

		ev("2026-01-01T00:00:00Z", rotation.KeyCreated, "kid_i2", "initech"),
		start("2026-04-01T00:00:00Z", "kid_i2", "initech", "kid_i3", "2026-04-15T00:00:00Z"),
		ev("2026-04-10T00:00:00Z", rotation.KeyRetired, "kid_i2", "initech"),
		created("2026-04-01T00:00:00Z", "kid_i3", "initech", "", "2026-10-01T00:00:00Z"),
	)
	traffic(t, conn,
		calls{acmeOld, "kid_a", "2026-08-25T00:00:00Z", "2026-08-25T03:00:00Z", time.Hour},
		calls{acmeWeb, "kid_a", "2026-08-30T00:00:00Z", "2026-09-02T00:00:00Z", 30 * time.Minute},
		calls{acmeWeb, "kid_b", "2026-09-02T00:10:00Z", "2026-09-06T00:00:00Z", 30 * time.Minute},
		calls{acmeBatch, "kid_a", "2026-08-30T00:17:00Z", "2026-09-05T00:00:00Z", time.Hour},
		calls{acmeCron, "kid_a", "2026-09-01T06:00:00Z", "2026-09-01T06:01:00Z", time.Hour},
		calls{curl, "kid_a", "2026-09-02T11:30:00Z", "2026-09-03T11:31:00Z", 24 * time.Hour},
		calls{curl, "kid_b", "2026-09-03T11:45:00Z", "2026-09-03T11:46:00Z", time.Hour},
		calls{globexApp, "kid_g3", "2026-09-30T00:00:00Z", "2026-10-01T12:00:00Z", time.Hour},
		calls{globexApp, "kid_g4", "2026-10-01T12:30:00Z", "2026-10-03T00:00:00Z", time.Hour},
	)
	action := func(id, kind, key, client, mode, state, updated string) {
		t.Helper()
		err := conn.Exec(context.Background(), `INSERT INTO actions (id, kind, key_id, client_id, mode, state, requested_at, queued_at, updated_at, version)
VALUES (?, ?, ?, ?, ?, ?, fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 1)`,
			id, kind, key, client, mode, state, at(updated).Add(-time.Minute).UnixMilli(), at(updated).Add(-time.Minute).UnixMilli(), at(updated).UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
	}
	action("wh_1", "revoke", "kid_g1", "globex", "auto", "sent", "2026-10-15T10:00:00Z")
	action("wh_2", "revoke", "kid_g3", "globex", "dry-run", "dry_run", "2026-10-01T08:00:00Z")
	action("wh_3", "extend_grace", "kid_a", "acme", "approve", "sent", "2026-09-02T09:00:00Z")
	action("wh_4", "extend_grace", "kid_b", "acme", "auto", "sent", "2026-11-15T00:00:00Z")
	action("wh_5", "reactivate", "kid_b", "acme", "approve", "refused", "2026-11-16T00:00:00Z")
}

func lifecycle(t *testing.T, conn driver.Conn, evs ...rotation.Event) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, version, expires_at,
	src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		var grace, expires *time.Time
		if !e.GraceUntil.IsZero() {
			grace = &e.GraceUntil
		}
		if !e.ExpiresAt.IsZero() {
			expires = &e.ExpiresAt
		}
		if err := b.Append(e.TS, e.Type, e.KeyID, e.ClientID, e.NewKeyID, grace, e.Reason, e.Version, expires,
			"key-lifecycle", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func traffic(t *testing.T, conn driver.Conn, cs ...calls) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cs {
		for ts := at(c.from); ts.Before(at(c.to)); ts = ts.Add(c.interval) {
			n++
			if err := b.Append(ts, c.key, "", c.c.client, "ok", uint16(200), netip.MustParseAddr(c.c.ip).As16(),
				c.c.ua, "GET", "/v1/prices", "r-"+ts.Format(time.RFC3339), "edge-test", "auth-events", int32(0), int64(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// newDB is a migrated database whose rollups ClickHouse's views fill from the events the tests
// insert.
func newDB(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

const wantTable = `Rotations from 2026-08-22T12:00:00Z to 2026-11-20T12:00:00Z (UTC)

KEY     CLIENT   STATE     CREATED           AGE      EXPIRES           LAST ROTATION     RETIRED           TOOK   ROTATIONS  STRAGGLERS                                        REVOKES  ROLLBACKS
kid_a   acme     retired   2026-05-01 00:00  125d12h  2026-11-01 00:00  2026-09-01 00:00  2026-09-03 12:00  2d12h  1          3: acme-batch, 203.0.113.9 (curl/8.4), acme-cron  0        1
kid_b   acme     retiring  2026-09-01 00:00  80d12h   -                 2026-11-10 00:00  -                 -      0          -                                                 0        1
kid_c   acme     active    2026-11-10 00:00  10d12h   -                 -                 -                 -      0          -                                                 0        0
kid_g2  globex   revoked   2026-06-01 00:00  101d0h   -                 -                 -                 -      0          -                                                 1        0
kid_g3  globex   retired   2026-06-01 00:00  123d6h   -                 2026-10-01 00:00  2026-10-02 06:00  1d6h   1          0                                                 0        0
kid_g1  globex   revoked   2026-10-01 00:00  14d10h   -                 -                 -                 -      0          -                                                 1        0
kid_g4  globex   active    2026-10-01 00:00  50d12h   -                 -                 -                 -      0          -                                                 0        0
kid_i3  initech  active    2026-04-01 00:00  233d12h  2026-10-01 00:00  -                 -                 -      0          -                                                 0        0

8 keys, 2 rotations completed, 1 key retired with stragglers, 2 emergency revokes, 2 rollbacks
`

const wantCSV = `key_id,client_id,state,created_at,age_seconds,version,expires_at,last_rotation_at,rotation_id,retired_at,rotation_took_seconds,rotations_completed,stragglers_at_retirement,stragglers,emergency_revokes,rollbacks
kid_a,acme,retired,2026-05-01T00:00:00Z,10843200,3,2026-11-01T00:00:00Z,2026-09-01T00:00:00Z,kid_a>kid_b,2026-09-03T12:00:00Z,216000,1,3,acme-batch; 203.0.113.9 (curl/8.4); acme-cron,0,1
kid_b,acme,retiring,2026-09-01T00:00:00Z,6955200,,,2026-11-10T00:00:00Z,kid_b>kid_c,,,0,,,0,1
kid_c,acme,active,2026-11-10T00:00:00Z,907200,,,,,,,0,,,0,0
kid_g2,globex,revoked,2026-06-01T00:00:00Z,8726400,,,,,,,0,,,1,0
kid_g3,globex,retired,2026-06-01T00:00:00Z,10648800,,,2026-10-01T00:00:00Z,kid_g3>kid_g4,2026-10-02T06:00:00Z,108000,1,0,,0,0
kid_g1,globex,revoked,2026-10-01T00:00:00Z,1245605,,,,,,,0,,,1,0
kid_g4,globex,active,2026-10-01T00:00:00Z,4363200,,,,,,,0,,,0,0
kid_i3,initech,active,2026-04-01T00:00:00Z,20174400,,2026-10-01T00:00:00Z,,,,,0,,,0,0
`

func TestRotationsReport(t *testing.T) {
	conn := newDB(t)
	seed(t, conn)
	opts := Options{Since: since, Until: until, QuietFor: time.Hour}
	rows, err := Rotations(context.Background(), conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The JSON is built independently of the writers: one object per key, from the scenario.
	type obj = map[string]any
	key := func(id, client, state, created string, age float64) obj {
		return obj{"key_id": id, "client_id": client, "state": state, "created_at": created, "age_seconds": age,
			"version": "", "expires_at": nil,
			"last_rotation_at": nil, "rotation_id": "", "retired_at": nil, "rotation_took_seconds": nil,
			"rotations_completed": 0.0, "stragglers_at_retirement": nil, "stragglers": []any{},
			"emergency_revokes": 0.0, "rollbacks": 0.0}
	}
	with := func(o obj, kv ...any) obj {
		for i := 0; i < len(kv); i += 2 {
			o[kv[i].(string)] = kv[i+1]
		}
		return o
	}
	days := func(d, h float64) float64 { return (d*24 + h) * 3600 }
	wantJSON := []any{
		with(key("kid_a", "acme", "retired", "2026-05-01T00:00:00Z", days(125, 12)), "version", "3", "expires_at", "2026-11-01T00:00:00Z",
			"last_rotation_at", "2026-09-01T00:00:00Z", "rotation_id", "kid_a>kid_b", "retired_at", "2026-09-03T12:00:00Z",
			"rotation_took_seconds", days(2, 12), "rotations_completed", 1.0, "stragglers_at_retirement", 3.0,
			"stragglers", []any{"acme-batch", "203.0.113.9 (curl/8.4)", "acme-cron"}, "rollbacks", 1.0),
		with(key("kid_b", "acme", "retiring", "2026-09-01T00:00:00Z", days(80, 12)),
			"last_rotation_at", "2026-11-10T00:00:00Z", "rotation_id", "kid_b>kid_c", "rollbacks", 1.0),
		key("kid_c", "acme", "active", "2026-11-10T00:00:00Z", days(10, 12)),
		with(key("kid_g2", "globex", "revoked", "2026-06-01T00:00:00Z", days(101, 0)), "emergency_revokes", 1.0),
		with(key("kid_g3", "globex", "retired", "2026-06-01T00:00:00Z", days(123, 6)),
			"last_rotation_at", "2026-10-01T00:00:00Z", "rotation_id", "kid_g3>kid_g4", "retired_at", "2026-10-02T06:00:00Z",
			"rotation_took_seconds", days(1, 6), "rotations_completed", 1.0, "stragglers_at_retirement", 0.0),
		with(key("kid_g1", "globex", "revoked", "2026-10-01T00:00:00Z", days(14, 10)+5), "emergency_revokes", 1.0),
		key("kid_g4", "globex", "active", "2026-10-01T00:00:00Z", days(50, 12)),
		with(key("kid_i3", "initech", "active", "2026-04-01T00:00:00Z", days(233, 12)), "expires_at", "2026-10-01T00:00:00Z"),
	}

	for _, c := range []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"table", func(t *testing.T, out string) { same(t, out, wantTable) }},
		{"csv", func(t *testing.T, out string) { same(t, out, wantCSV) }},
		{"json", func(t *testing.T, out string) {
			var got []any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			if !reflect.DeepEqual(got, wantJSON) {
				t.Errorf("json:\n got %v\nwant %v", got, wantJSON)
			}
		}},
	} {
		t.Run(c.format, func(t *testing.T) {
			var out bytes.Buffer
			if err := Write(&out, c.format, rows, opts); err != nil {
				t.Fatal(err)
			}
			c.check(t, out.String())
		})
	}
}

// same compares outputs line by line, naming the first line that differs.
func same(t *testing.T, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Errorf("line %d:\n got %q\nwant %q", i+1, gl, wl)
			break
		}
	}
	t.Errorf("whole output:\n%s", got)
}

// TestColumnsAreTheJSONFields: the CSV header and the JSON objects carry the same names, in order.
func TestColumnsAreTheJSONFields(t *testing.T) {
	b, err := json.Marshal(Row{})
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var names []string
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	var cols []string
	for _, c := range Columns {
		cols = append(cols, c.Name)
	}
	if !reflect.DeepEqual(names, cols) {
		t.Errorf("JSON fields %v\n   columns %v", names, cols)
	}
}

func TestEmptyReportAndFormats(t *testing.T) {
	opts := Options{Since: since, Until: until}
	for _, c := range []struct{ format, want string }{
		{"json", "[]\n"},
		{"csv", "key_id,client_id,state,created_at,age_seconds,version,expires_at,last_rotation_at,rotation_id,retired_at,rotation_took_seconds,rotations_completed,stragglers_at_retirement,stragglers,emergency_revokes,rollbacks\n"},
	} {
		var out bytes.Buffer
		if err := Write(&out, c.format, nil, opts); err != nil || out.String() != c.want {
			t.Errorf("%s of no rows: %q, %v; want %q", c.format, out.String(), err, c.want)
		}
	}
	if err := Write(new(bytes.Buffer), "yaml", nil, opts); err == nil || !strings.Contains(err.Error(), "table, csv, json") {
		t.Errorf("format yaml: %v, want an error naming the formats", err)
	}
}

func TestTableDuration(t *testing.T) {
	for _, c := range []struct {
		s    int64
		want string
	}{{0, "0m"}, {59, "0m"}, {720, "12m"}, {4*3600 + 720, "4h12m"}, {86400, "1d0h"}, {95*86400 + 4*3600 + 59, "95d4h"}, {-3600, "-1h0m"}} {
		if got := tableDuration(&c.s); got != c.want {
			t.Errorf("%ds: %q, want %q", c.s, got, c.want)
		}
	}
	if got := tableDuration(nil); got != "-" {
		t.Errorf("nil: %q, want -", got)
	}
}
