package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/internal/config"
)

// leadActions runs, until the test ends, the leader's action loop of a 'keywatch run' over conn
// (revoke settings as given, rollback defaults): the one that decides and sends what the CLI asks.
func leadActions(t *testing.T, conn driver.Conn, rc config.Revoke) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := action.New(conn, rc, nil, nil).WithRollback(config.Default().Rollback)
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

// keywatch revoke asks; the leader of 'keywatch run' decides (the hourly cap) and sends; the
// command reports what came of it. Without a leader it says so when --wait ends, and the request
// is taken by the next leader.
func TestRevokeCommand(t *testing.T) {
	ctx := context.Background()
	db, conn := migratedDB(t)
	for _, k := range []string{"kid_live", "kid_other", "kid_root"} {
		if err := conn.Exec(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'key.created', ?, 'acme', '', NULL, '', 0, 0)`, time.Now().Add(-time.Hour).UnixMilli(), k); err != nil {
			t.Fatal(err)
		}
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	srv := newWebhookReceiver(t, secret, false)
	path := filepath.Join(t.TempDir(), "keywatch.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
clickhouse:
  addr: [%q]
  database: %s
revoke:
  webhook_url: %q
  protected_keys: ["kid_root"]
  max_per_hour: 2
`, ch.Addr(t), db, srv.URL)), 0o600)
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", secret)
	rc := config.Default().Revoke
	rc.WebhookURL, rc.WebhookSecret, rc.ProtectedKeys, rc.MaxPerHour = srv.URL, secret, []string{"kid_root"}, 2
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := dispatch(ctx, append([]string{"revoke"}, args...), &out, &out)
		return code, out.String()
	}

	// No 'keywatch run': the request waits for a leader.
	if code, out := run("--config", path, "--reason", "first", "--wait", "300ms", "kid_live"); code != 1 || !strings.Contains(out, "waits for the leader") {
		t.Errorf("revoke without a leader: exit %d, want 1 saying it waits for the leader:\n%s", code, out)
	}
	leadActions(t, conn, rc)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--config", path, "kid_live"}, 2, "--reason is required"},
		{[]string{"--config", path, "--reason", "leaked", "kid_live"}, 0, "SENT revoke of kid_live"},
		{[]string{"--config", path, "--reason", "leaked", "kid_root"}, 3, "REFUSED revoke of kid_root"},
		{[]string{"--config", path, "--reason", "leaked", "kid_other"}, 3, "revoke.max_per_hour"}, // the first request took the other slot
		{[]string{"--config", path, "--reason", "leaked", "kid_nobody"}, 1, "unknown key"},
	} {
		if code, out := run(c.args...); code != c.code || !strings.Contains(out, c.out) {
			t.Errorf("revoke %v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.out, out)
		}
	}
	var keys []string
	for _, d := range srv.all() {
		keys = append(keys, d.id)
	}
	if len(keys) != 2 || keys[0] == keys[1] {
		t.Errorf("receiver got webhook-ids %v, want two (the first request, taken by the leader, and the second)", keys)
	}
}
