package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReportCommand: `keywatch report rotations` over a rotation with a straggler, in each format,
// and its usage errors. The report's content is tested in depth in package report.
func TestReportCommand(t *testing.T) {
	ctx := context.Background()
	db, conn := migratedDB(t)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range []struct {
		at                    time.Time
		typ, key, newKey, why string
	}{
		{t0, "key.created", "kid_old", "", ""},
		{t0.Add(24 * time.Hour), "key.rotation_started", "kid_old", "kid_new", "scheduled rotation"},
		{t0.Add(72 * time.Hour), "key.retired", "kid_old", "", ""},
	} {
		if err := conn.Exec(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, 'acme', ?, NULL, ?, 0, 0)`, e.at.UnixMilli(), e.typ, e.key, e.newKey, e.why); err != nil {
			t.Fatal(err)
		}
	}
	// acme-batch calls the old key during the rotation and never the new one: a straggler.
	if err := conn.Exec(ctx, `INSERT INTO auth_events (ts, key_id, client_id, outcome, status, ip, user_agent, src_topic, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'kid_old', 'acme-batch', 'ok', 200, toIPv6('198.51.100.7'), 'batch/1.0', 'auth-events', 0, 1)`, t0.Add(48*time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keywatch.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("clickhouse:\n  addr: [%q]\n  database: %s\n", ch.Addr(t), db)), 0o600); err != nil {
		t.Fatal(err)
	}
	down := filepath.Join(t.TempDir(), "down.yaml")
	if err := os.WriteFile(down, []byte("clickhouse:\n  addr: [\"127.0.0.1:1\"]\n  dial_timeout: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"report", "rotations", "--config", path, "--at", "2026-11-10T00:00:00Z", "--since", "30d"}
	for _, c := range []struct {
		name string
		args []string
		code int
		want func(t *testing.T, out string)
	}{
		{"csv", append(base, "--format", "csv"), 0, reportEquals(`key_id,client_id,state,created_at,age_seconds,version,expires_at,last_rotation_at,rotation_id,retired_at,rotation_took_seconds,rotations_completed,stragglers_at_retirement,stragglers,emergency_revokes,rollbacks
kid_old,acme,retired,2026-11-01T00:00:00Z,259200,,,2026-11-02T00:00:00Z,kid_old>kid_new,2026-11-04T00:00:00Z,172800,1,1,acme-batch,0,0
kid_new,acme,active,2026-11-02T00:00:00Z,691200,,,,,,,0,,,0,0
`)},
		{"table", base, 0, reportEquals(`Rotations from 2026-10-11T00:00:00Z to 2026-11-10T00:00:00Z (UTC)

KEY      CLIENT  STATE    CREATED           AGE   EXPIRES  LAST ROTATION     RETIRED           TOOK  ROTATIONS  STRAGGLERS     REVOKES  ROLLBACKS
kid_old  acme    retired  2026-11-01 00:00  3d0h  -        2026-11-02 00:00  2026-11-04 00:00  2d0h  1          1: acme-batch  0        0
kid_new  acme    active   2026-11-02 00:00  8d0h  -        -                 -                 -     0          -              0        0

2 keys, 1 rotation completed, 1 key retired with stragglers, 0 emergency revokes, 0 rollbacks
`)},
		{"json", append(base, "--format", "json"), 0, func(t *testing.T, out string) {
			var rows []map[string]any
			if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[0]["key_id"] != "kid_old" ||
				rows[0]["rotation_took_seconds"] != 172800.0 || fmt.Sprint(rows[0]["stragglers"]) != "[acme-batch]" {
				t.Errorf("json (%v):\n%s", err, out)
			}
		}},
		{"a window before the rotation leaves the retired key out", []string{"report", "rotations", "--config", path,
			"--at", "2026-12-10T00:00:00Z", "--since", "1d12h", "--format", "csv"}, 0, func(t *testing.T, out string) {
			if strings.Contains(out, "kid_old") || !strings.Contains(out, "kid_new,acme,active") {
				t.Errorf("kid_old was retired before the window, kid_new active in it:\n%s", out)
			}
		}},
		{"help explains each column", []string{"report", "--help"}, 0, reportContains("Usage: keywatch report rotations", "stragglers_at_retirement (STRAGGLERS)", "rotation_took_seconds (TOOK)", "quiet_for")},
		{"no report named", []string{"report"}, 2, reportContains("want the report to print: rotations")},
		{"unknown report", []string{"report", "keys"}, 2, reportContains(`unknown report "keys"`)},
		{"bad --since", []string{"report", "rotations", "--since", "3 months"}, 2, reportContains(`--since: "3 months"`)},
		{"negative --since", []string{"report", "rotations", "--since", "-1h"}, 2, reportContains("must be positive")},
		{"bad --format", []string{"report", "rotations", "--format", "yaml"}, 2, reportContains("want one of table, csv, json")},
		{"bad --at", []string{"report", "rotations", "--at", "yesterday"}, 2, reportContains("--at")},
		{"ClickHouse unreachable", []string{"report", "rotations", "--config", down}, 1, reportContains("report: ")},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			code := dispatch(ctx, c.args, &out, &errs)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out.String(), errs.String())
			}
			c.want(t, out.String()+errs.String())
		})
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "0d1s": time.Second} {
		if got, err := parseSince(in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "d", "90", "1.5d", "-2d", "2d-3d", "99999999999999999999d"} {
		if got, err := parseSince(in); err == nil {
			t.Errorf("%q: %v, want an error", in, got)
		}
	}
}

func reportEquals(want string) func(*testing.T, string) {
	return func(t *testing.T, out string) {
		t.Helper()
		if out != want {
			t.Errorf("got:\n%s\nwant:\n%s", out, want)
		}
	}
}

func reportContains(parts ...string) func(*testing.T, string) {
	return func(t *testing.T, out string) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Errorf("output lacks %q:\n%s", p, out)
			}
		}
	}
}
