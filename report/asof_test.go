package report

import (
	"context"
	"testing"
	"time"

	"github.com/keywatch/keywatch/rotation"
)

// TestRevokeNotCountedTwice: keywatch sends a revoke webhook; the key-management system
// revokes the key while handling it and emits key.revoked stamped with its own clock, which is
// before keywatch records the action as sent (updated_at is written after the 2xx arrives, or
// after a retry whose first attempt already landed). That is one emergency revoke.
func TestRevokeNotCountedTwice(t *testing.T) {
	conn := newDB(t)
	ev := func(ts, typ string) rotation.Event {
		return rotation.Event{TS: at(ts), Type: typ, KeyID: "kid_r", ClientID: "globex"}
	}
	lifecycle(t, conn,
		ev("2026-10-01T00:00:00Z", rotation.KeyCreated),
		ev("2026-10-15T10:00:00Z", rotation.KeyRevoked), // the KMS revoked while handling the webhook
	)
	// keywatch's attempt: sent, the 200 recorded 2 s later (a slow receiver, or a retry after a timed-out first attempt).
	err := conn.Exec(context.Background(), `INSERT INTO actions (id, kind, key_id, client_id, mode, state, requested_at, queued_at, updated_at, version)
VALUES ('wh_r', 'revoke', 'kid_r', 'globex', 'auto', 'sent', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 1)`,
		at("2026-10-15T09:59:59Z").UnixMilli(), at("2026-10-15T09:59:59Z").UnixMilli(), at("2026-10-15T10:00:02Z").UnixMilli()) // 2 s later
	if err != nil {
		t.Fatal(err)
	}
	rows, err := Rotations(context.Background(), conn, Options{Since: since, Until: until, QuietFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].EmergencyRevokes != 1 {
		t.Fatalf("rows %+v: want kid_r with 1 emergency revoke", rows)
	}
}

// TestStateAsOfUntil: docs/report.md: "the keys' states ... are taken as of that instant" (--at).
// A key retired outside any rotation before the window's end and revoked after it was retired,
// not active, at the end of the window.
func TestStateAsOfUntil(t *testing.T) {
	conn := newDB(t)
	ev := func(ts, typ string) rotation.Event {
		return rotation.Event{TS: at(ts), Type: typ, KeyID: "kid_x", ClientID: "acme"}
	}
	lifecycle(t, conn,
		ev("2026-09-01T00:00:00Z", rotation.KeyCreated),
		ev("2026-10-01T00:00:00Z", rotation.KeyRetired),
		ev("2026-12-01T00:00:00Z", rotation.KeyRevoked), // after until (2026-11-20)
	)
	rows, err := Rotations(context.Background(), conn, Options{Since: since, Until: until, QuietFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].State != "retired" || rows[0].AgeSeconds == nil || *rows[0].AgeSeconds != 30*24*3600 {
		t.Fatalf("row %+v (age %v): want state retired, age 30d (created to retired)", rows, *rows[0].AgeSeconds)
	}
}
