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
)

func TestRevokeCommand(t *testing.T) {
	ctx := context.Background()
	db, conn := migratedDB(t)
	for _, k := range []string{"kid_live", "kid_root"} {
		if err := conn.Exec(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (?, 'key.created', ?, 'acme', '', NULL, '', 0, 0)`, time.Now().Add(-time.Hour), k); err != nil {
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
`, ch.Addr, db, srv.URL)), 0o600)
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", secret)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--config", path, "kid_live"}, 2, "--reason is required"},
		{[]string{"--config", path, "--reason", "leaked", "kid_live"}, 0, "SENT revoke of kid_live"},
		{[]string{"--config", path, "--reason", "leaked", "kid_root"}, 3, "REFUSED"},
		{[]string{"--config", path, "--reason", "leaked", "kid_nobody"}, 1, "unknown key"},
	} {
		var out bytes.Buffer
		code := dispatch(ctx, append([]string{"revoke"}, c.args...), &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("revoke %v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.out, out.String())
		}
	}
	if n := len(srv.all()); n != 1 {
		t.Errorf("receiver called %d times, want 1", n)
	}
}
