package ingest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/rotation"
)

// TestDecodeLifecycleMetadata: version (string or whole number), expires_at (like ts) and scopes
// (array of strings) are optional; a wrong type or value is a dead letter with its reason.
func TestDecodeLifecycleMetadata(t *testing.T) {
	const base = `"ts":"2026-11-25T16:00:00Z","type":"key.created","key_id":"kid_a"`
	expires := time.Date(2027, 2, 23, 16, 0, 0, 0, time.UTC)
	cases := []struct {
		name, fields, wantReason string
		version                  string
		expires                  *time.Time
		scopes                   []string
	}{
		{name: "old event without metadata", fields: ``},
		{name: "nulls are absent", fields: `,"version":null,"expires_at":null,"scopes":null`},
		{name: "all three", fields: `,"version":"2026-11","expires_at":"2027-02-23T16:00:00Z","scopes":["trade","read"]`,
			version: "2026-11", expires: &expires, scopes: []string{"read", "trade"}},
		{name: "version as a number, expiry in epoch ms", fields: `,"version":3,"expires_at":1803398400000`, version: "3", expires: &expires},
		{name: "duplicate scopes count once", fields: `,"scopes":["read","read"]`, scopes: []string{"read"}},
		{name: "empty scopes say nothing", fields: `,"scopes":[]`},
		{name: "fractional version", fields: `,"version":2.5`, wantReason: ingest.ReasonInvalidValue},
		{name: "boolean version", fields: `,"version":true`, wantReason: ingest.ReasonWrongType},
		{name: "version too long", fields: `,"version":"` + strings.Repeat("v", 65) + `"`, wantReason: ingest.ReasonInvalidValue},
		{name: "expiry not a time", fields: `,"expires_at":"next year"`, wantReason: ingest.ReasonInvalidValue},
		{name: "expiry an object", fields: `,"expires_at":{}`, wantReason: ingest.ReasonWrongType},
		{name: "scopes a string", fields: `,"scopes":"read"`, wantReason: ingest.ReasonWrongType},
		{name: "scope a number", fields: `,"scopes":["read",7]`, wantReason: ingest.ReasonWrongType},
		{name: "empty scope", fields: `,"scopes":[""]`, wantReason: ingest.ReasonInvalidValue},
		{name: "two scopes in one string", fields: `,"scopes":["read trade"]`, wantReason: ingest.ReasonInvalidValue},
		{name: "two scopes joined by a comma", fields: `,"scopes":["read,trade"]`, wantReason: ingest.ReasonInvalidValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ingest.DecodeLifecycle([]byte(`{` + base + tc.fields + `}`))
			if tc.wantReason != "" {
				var de *ingest.DecodeError
				if !errors.As(err, &de) || de.Reason != tc.wantReason {
					t.Fatalf("err = %v, want reason %s", err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Version != tc.version || !slices.Equal(ev.Scopes, tc.scopes) || ev.ExpiresAt.IsZero() != (tc.expires == nil) ||
				(tc.expires != nil && !ev.ExpiresAt.Equal(*tc.expires)) {
				t.Fatalf("got version %q expires %v scopes %v; want %q %v %v", ev.Version, ev.ExpiresAt, ev.Scopes, tc.version, tc.expires, tc.scopes)
			}
		})
	}
}

// TestLifecycleMetadataStored: metadata posted over the API and consumed from Kafka is stored and
// reaches the rotation model; events without it (new ones, and rows written before the columns
// existed) still store and load.
func TestLifecycleMetadataStored(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	decode := func(msg string) rotation.Event {
		t.Helper()
		ev, err := ingest.DecodeLifecycle([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	// Over the API (POST /v1/lifecycle's writer); the second post is a client's retry.
	w := ingest.NewLifecycleWriter(e.conn)
	for _, msg := range []string{
		`{"ts":"2026-11-25T10:00:00Z","type":"key.created","key_id":"kid_api","client_id":"acme","version":7,"expires_at":"2027-01-01T00:00:00Z","scopes":["read"]}`,
		`{"ts":"2026-11-25T10:00:00Z","type":"key.created","key_id":"kid_api","client_id":"acme","version":7,"expires_at":"2027-01-01T00:00:00Z","scopes":["read"]}`,
		`{"ts":"2026-11-25T11:00:00Z","type":"key.created","key_id":"kid_api","client_id":"acme","scopes":["read","trade"]}`,
		`{"ts":"2026-11-25T10:00:00Z","type":"key.created","key_id":"kid_plain","client_id":"acme"}`,
	} {
		if err := w.StoreLifecycle(ctx, decode(msg)); err != nil {
			t.Fatal(err)
		}
	}
	// A row as ingest wrote it before migration 0012 (its column list); from another topic, so that
	// ingest_progress does not take it for a consumed offset.
	if err := e.conn.Exec(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset)
		VALUES ('2026-11-25 09:00:00', 'key.created', 'kid_legacy', 'globex', '', NULL, '', 'old-topic', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	// Through Kafka: a rotation whose start states the old key's expiry, and a bad scope dead-lettered.
	if err := e.kafka.Produce(ctx, lifecycleTopic,
		[]byte(`{"ts":"2026-11-25T12:00:00Z","type":"key.rotation_started","key_id":"kid_api","new_key_id":"kid_next","grace_until":"2026-11-28T12:00:00Z","expires_at":"2026-11-28T12:00:00Z"}`),
		[]byte(`{"ts":"2026-11-25T12:00:00Z","type":"key.created","key_id":"kid_next","client_id":"acme","version":"8","scopes":["read"]}`),
		[]byte(`{"ts":"2026-11-25T12:00:00Z","type":"key.created","key_id":"kid_bad","scopes":"read,trade"}`),
	); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "lifecycle events consumed", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM key_lifecycle_events WHERE src_topic = ?", lifecycleTopic)+e.count(t, "SELECT count() FROM dead_letters") == 3 &&
			e.lag(t, lifecycleTopic) == 0
	})
	_ = stop()
	if n := e.count(t, "SELECT count() FROM key_lifecycle_events WHERE key_id = 'kid_api' AND src_partition = -1"); n != 2 {
		t.Errorf("%d API rows of kid_api, want 2 (the retry stored once)", n)
	}
	if n := e.count(t, "SELECT count() FROM dead_letters WHERE reason = ? AND topic = ?", ingest.ReasonWrongType, lifecycleTopic); n != 1 {
		t.Errorf("%d wrong_type dead letters, want 1 (scopes as a string)", n)
	}

	m, err := rotation.Load(ctx, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	date := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	for _, want := range []struct {
		key, version string
		expires      time.Time
		scopes       []string
	}{
		{"kid_api", "7", date("2026-11-28T12:00:00Z"), []string{"read", "trade"}},
		{"kid_next", "8", time.Time{}, []string{"read"}},
		{"kid_plain", "", time.Time{}, nil},
		{"kid_legacy", "", time.Time{}, nil},
	} {
		k := m.Key(want.key)
		if k == nil {
			t.Errorf("%s not in the model", want.key)
			continue
		}
		if k.Version != want.version || !k.ExpiresAt.Equal(want.expires) || !slices.Equal(k.Scopes, want.scopes) {
			t.Errorf("%s: version %q expires %s scopes %v; want %q %s %v", want.key, k.Version, k.ExpiresAt, k.Scopes, want.version, want.expires, want.scopes)
		}
	}
	if k := m.Key("kid_api"); k.State != rotation.Retiring || k.Rotation == nil || k.Rotation.NewKeyID != "kid_next" {
		t.Errorf("kid_api %+v: want retiring into kid_next", k)
	}
}
