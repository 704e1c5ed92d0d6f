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

	"github.com/keywatch/keywatch/internal/config"
)

// keywatch rollback: --extend or --reactivate is sent once through the signed webhook (by the
// leader of 'keywatch run') and audited as manual; a key with a recent leak finding, or in no
// rotation, is refused (exit 3) and audited.
func TestRollbackCommand(t *testing.T) {
	ctx := context.Background()
	db, conn := migratedDB(t)
	now := time.Now().UTC()
	for _, ev := range []struct{ typ, key, newKey string }{
		{"key.rotation_started", "kid_old", "kid_new"}, {"key.revoked", "kid_old", ""},
		{"key.rotation_started", "kid_leaky", "kid_leaky_new"}, {"key.revoked", "kid_leaky", ""},
		{"key.revoked", "kid_plain", ""}, // revoked, but in no rotation: nothing to roll back
	} {
		if err := conn.Exec(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_partition, src_offset)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, ?, 'acme', ?, NULL, '', 0, 0)`, now.Add(-time.Hour).UnixMilli(), ev.typ, ev.key, ev.newKey); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Exec(ctx, `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 'r', 'leak', 'fp', 'critical', 100, 'kid_leaky', 'acme', '', 'used from 9 new networks', '{}')`, now.Add(-time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
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
`, ch.Addr(t), db, srv.URL)), 0o600)
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", secret)
	t.Setenv("USER", "ops")
	rc := config.Default().Revoke
	rc.WebhookURL, rc.WebhookSecret = srv.URL, secret
	leadActions(t, conn, rc)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--config", path, "kid_old"}, 2, "--extend D"},
		{[]string{"--config", path, "--extend", "24h", "--reactivate", "kid_old"}, 2, "exclude each other"},
		{[]string{"--config", path, "--extend", "48h", "kid_old"}, 0, "SENT extend_grace of kid_old"},
		{[]string{"--config", path, "--reactivate", "--reason", "client down", "kid_old"}, 0, "SENT reactivate of kid_old"},
		{[]string{"--config", path, "--extend", "24h", "kid_leaky"}, 3, "REFUSED extend_grace of kid_leaky"},
		{[]string{"--config", path, "--reactivate", "kid_plain"}, 3, "kid_plain is in no rotation"},
		{[]string{"--config", path, "--extend", "24h", "kid_nobody"}, 1, "unknown key"},
	} {
		var out bytes.Buffer
		code := dispatch(ctx, append([]string{"rollback"}, c.args...), &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("rollback %v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.out, out.String())
		}
	}
	var bodies []string
	for _, d := range srv.all() {
		bodies = append(bodies, d.body)
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"action":"extend_grace"`) || !strings.Contains(bodies[0], `"grace_until":`) ||
		!strings.Contains(bodies[1], `"action":"reactivate"`) || !strings.Contains(bodies[1], `"mode":"manual"`) {
		t.Errorf("webhook bodies %q, want one extend_grace and one reactivate", bodies)
	}
	var refused, notInRotation, decided uint64
	_ = conn.QueryRow(ctx, `SELECT countIf(event = 'refused' AND guardrail = 'leaked' AND key_id = 'kid_leaky'),
countIf(event = 'refused' AND guardrail = 'not_in_rotation' AND key_id = 'kid_plain' AND actor = 'cli:ops'), countIf(event = 'decided' AND actor = 'cli:ops')
FROM action_audit`).Scan(&refused, &notInRotation, &decided)
	if refused != 1 || notInRotation != 1 || decided != 2 {
		t.Errorf("audit: %d refused for the leak, %d for no rotation, %d decided by cli:ops; want 1, 1 and 2", refused, notInRotation, decided)
	}
}
