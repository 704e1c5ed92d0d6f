package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/finding"
)

// TestRotationPipelineBlocksOnReadiness drives a rotation the way a key-management pipeline would:
// lifecycle events through POST /v1/lifecycle, traffic through Kafka, then it asks keywatch
// (HTTP and CLI) whether the old key may be retired, while the detectors run on their schedules.
func TestRotationPipelineBlocksOnReadiness(t *testing.T) {
	db, kafka, httpAddr, cfgPath := runSetup(t, 1, `
detect:
  lingering:
    schedule: "@every 1s"
    quiet_for: 1s
`)
	const token = "pipeline-token-0123456789abcdef01234"
	t.Setenv("KEYWATCH_HTTP_TOKEN", token)
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()

	call := func(method, path, auth, body string) (int, string) {
		return request(t, method, "http://"+httpAddr+path, auth, body)
	}
	kw.waitReady(t, httpAddr)

	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	start := fmt.Sprintf(`{"ts":%q,"type":"key.rotation_started","key_id":"kid_old","client_id":"acme","new_key_id":"kid_new","grace_until":%q}`, ts(-2*time.Hour), ts(48*time.Hour))
	if code, body := call("POST", "/v1/lifecycle", "", start); code != http.StatusUnauthorized {
		t.Fatalf("POST without a token: %d %s, want 401", code, body)
	}
	if code, body := call("POST", "/v1/lifecycle", token, `{"type":"key.retired"}`); code != http.StatusBadRequest || !strings.Contains(body, "ts") {
		t.Fatalf("POST of an invalid event: %d %s, want 400 naming the field", code, body)
	}
	for range 2 { // a retry of the same event is stored once
		if code, body := call("POST", "/v1/lifecycle", token, start); code != 200 {
			t.Fatalf("POST rotation_started: %d %s", code, body)
		}
	}

	event := func(d time.Duration, key, client, ip, ua string) []byte {
		return fmt.Appendf(nil, `{"ts":%q,"key_id":%q,"client_id":%q,"ip":%q,"user_agent":%q,"status":200}`, ts(d), key, client, ip, ua)
	}
	var traffic [][]byte
	for m := 110; m > 0; m -= 5 { // acme's service has moved to the new key
		traffic = append(traffic, event(-time.Duration(m)*time.Minute, "kid_new", "acme", "203.0.113.5", "acme-sdk/2.1"))
	}
	traffic = append(traffic, event(-30*time.Minute, "kid_old", "", "198.51.100.77", "nightly-export/0.9")) // a straggler
	if err := kafka.Produce(context.Background(), "auth-events", traffic...); err != nil {
		t.Fatal(err)
	}

	var rep detect.Readiness
	waitUntil(t, "readiness names the straggler", func() bool {
		code, body := call("GET", "/v1/keys/kid_old/readiness", token, "")
		if code != 200 {
			return false
		}
		rep = detect.Readiness{}
		return json.Unmarshal([]byte(body), &rep) == nil && len(rep.Remaining) == 1
	})
	if rep.Safe || rep.Remaining[0].IP != "198.51.100.77" || rep.RotationID != "kid_old>kid_new" {
		t.Fatalf("readiness while the straggler remains: %+v", rep)
	}
	if code, _ := call("GET", "/v1/keys/kid_nobody/readiness", token, ""); code != http.StatusNotFound {
		t.Fatalf("readiness of an unknown key: %d, want 404", code)
	}
	t.Setenv("KEYWATCH_CONFIG", cfgPath)
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"readiness", "kid_old"}, &out, &errOut); code != 3 {
		t.Fatalf("keywatch readiness while unsafe: exit %d, want 3\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "UNSAFE") || !strings.Contains(out.String(), "198.51.100.77") {
		t.Fatalf("keywatch readiness output:\n%s", out.String())
	}

	// A pipeline's gate, the CLI's and the GitHub Action's: a wait that ends with the straggler
	// still there exits 3 naming it; an unknown key exits 1 at once.
	ctx := t.Context()
	gateVars := map[string]string{"vars.KEYWATCH_URL": "http://" + httpAddr, "secrets.KEYWATCH_READ_TOKEN": token, "inputs.old_key": "kid_old"}
	short := map[string]string{"wait": "2s", "poll": "1s"}
	out.Reset()
	if code := dispatch(ctx, []string{"readiness", "kid_old", "--wait", "2s", "--poll", "1s"}, &out, &errOut); code != 3 ||
		!strings.Contains(out.String(), "198.51.100.77") || !strings.Contains(errOut.String(), "unsafe to retire, 1 callers remain; asking again") {
		t.Fatalf("keywatch readiness --wait while unsafe: exit %d, want 3 naming the straggler\n%s%s", code, out.String(), errOut.String())
	}
	if gate := runGate(t, ctx, gateVars, short); gate.code != 3 || !strings.Contains(gate.summary, "\n    198.51.100.77 nightly-export/0.9") ||
		!strings.Contains(gate.summary, "198.51.100.77") || gate.stepOut != "verdict=unsafe\n" {
		t.Fatalf("the gate while unsafe: exit %d, want 3 with the straggler in the summary\n%s\nsummary:\n%s\noutputs: %q", gate.code, gate.output, gate.summary, gate.stepOut)
	}
	if code := dispatch(ctx, []string{"readiness", "--wait", "1h", "kid_nobody"}, &out, &errOut); code != 1 {
		t.Fatalf("keywatch readiness --wait of an unknown key: exit %d, want 1\n%s", code, errOut.String())
	}
	gateVars["inputs.old_key"] = "kid_nobody"
	if gate := runGate(t, ctx, gateVars, map[string]string{"wait": "1h"}); gate.code != 1 || gate.stepOut != "verdict=unknown\n" {
		t.Fatalf("the gate for an unknown key: exit %d, want 1\n%s", gate.code, gate.output)
	}
	gateVars["inputs.old_key"] = "kid_old"

	out.Reset()
	if code := dispatch(context.Background(), []string{"detect", "--once", "--detectors", "lingering", "--format", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("keywatch detect --once: exit %d\n%s", code, errOut.String())
	}
	var runs []struct {
		Detector string            `json:"detector"`
		Findings []finding.Finding `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &runs); err != nil || len(runs) != 1 || runs[0].Detector != "lingering" {
		t.Fatalf("detect --once --format json: %v\n%s", err, out.String())
	}

	// The straggler moves to the new key: after detect.lingering.quiet_for the key is safe, and
	// the gates waiting for it end with exit 0.
	type waited struct {
		code int
		out  string
	}
	cli, action := make(chan waited, 1), make(chan gateRun, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := dispatch(ctx, []string{"readiness", "--wait", "2m", "--poll", "1s", "kid_old"}, &out, &errOut)
		cli <- waited{code, out.String() + errOut.String()}
	}()
	g := newGate(t, ctx, gateVars, map[string]string{"wait": "2m", "poll": "1s"})
	go func() { action <- g.run() }()
	if err := kafka.Produce(context.Background(), "auth-events", event(-time.Minute, "kid_new", "", "198.51.100.77", "nightly-export/0.9")); err != nil {
		t.Fatal(err)
	}
	if w := <-cli; w.code != 0 || !strings.Contains(w.out, "SAFE to retire kid_old") {
		t.Fatalf("keywatch readiness --wait until safe: exit %d, want 0\n%s", w.code, w.out)
	}
	if gate := <-action; gate.code != 0 || !strings.Contains(gate.summary, "kid_old is safe to retire") || gate.stepOut != "verdict=safe\n" {
		t.Fatalf("the gate until safe: exit %d, want 0\n%s\nsummary:\n%s", gate.code, gate.output, gate.summary)
	}
	waitUntil(t, "readiness says safe", func() bool {
		code, body := call("GET", "/v1/keys/kid_old/readiness", token, "")
		return code == 200 && strings.Contains(body, `"safe":true`)
	})
	out.Reset()
	if code := dispatch(context.Background(), []string{"readiness", "kid_old"}, &out, &errOut); code != 0 {
		t.Fatalf("keywatch readiness once safe: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	// The pipeline retires kid_old, and a forgotten copy of the straggler's old config is refused on
	// it: nothing succeeds with the key any more, so readiness answers GONE and exits 0.
	retired := fmt.Sprintf(`{"ts":%q,"type":"key.retired","key_id":"kid_old","client_id":"acme"}`, ts(-30*time.Second))
	if code, body := call("POST", "/v1/lifecycle", token, retired); code != 200 {
		t.Fatalf("POST key.retired: %d %s", code, body)
	}
	refused := fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_old","ip":"198.51.100.78","user_agent":"nightly-export/0.8","outcome":"revoked_key","status":401}`, ts(-10*time.Second))
	if err := kafka.Produce(context.Background(), "auth-events", refused); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "readiness says gone, with the refused attempt", func() bool {
		code, body := call("GET", "/v1/keys/kid_old/readiness", token, "")
		return code == 200 && strings.Contains(body, `"verdict":"gone"`) && strings.Contains(body, "198.51.100.78")
	})
	out.Reset()
	if code := dispatch(context.Background(), []string{"readiness", "kid_old"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "GONE: kid_old (retired)") {
		t.Fatalf("keywatch readiness once retired with only refused attempts: exit %d, want 0 and GONE\n%s%s", code, out.String(), errOut.String())
	}

	conn := ch.Conn(t, db)
	waitUntil(t, "scheduled lingering runs are recorded", func() bool {
		var runs uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM detector_runs WHERE detector = 'lingering' AND error = ''").Scan(&runs)
		return runs >= 2
	})
	if _, metrics := call("GET", "/metrics", "", ""); !strings.Contains(metrics, `keywatch_detect_runs_total{detector="lingering",result="ok"}`) {
		t.Fatalf("/metrics lacks the detector runs")
	}
}

// TestDetectOnceOnlyReads runs `keywatch detect --once` through a ClickHouse user that may only
// read (readonly = 1), on traffic whose fan-out baseline has hours no job has finalized yet: every
// detector runs, and the leak finding is printed.
func TestDetectOnceOnlyReads(t *testing.T) {
	db, conn := migratedDB(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

	// Eight days from five addresses, then 500 addresses in the last hour and a network never seen.
	b, err := conn.PrepareBatch(ctx, `INSERT INTO auth_events (ts, key_id, client_id, outcome, status, ip, asn, as_org, country,
	user_agent, method, route, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	offset := int64(0)
	add := func(ts time.Time, ip string, asn uint32, org string) {
		offset++
		if err := b.Append(ts, "kid_fan", "initech", "ok", uint16(200), netip.MustParseAddr(ip).As16(), asn, org, "DE",
			"test-sdk/1.0", "GET", "/v1/prices", "auth-events", int32(0), offset); err != nil {
			t.Fatal(err)
		}
	}
	for ts, i := at.Add(-8*24*time.Hour), 0; ts.Before(at.Add(-time.Hour)); ts, i = ts.Add(time.Minute), i+1 {
		add(ts, fmt.Sprintf("198.51.100.%d", 1+i%5), 64500, "Example Net")
	}
	for i := range 500 {
		add(at.Add(-55*time.Minute+time.Duration(i)*6*time.Second), fmt.Sprintf("100.64.%d.%d", i/256, i%256), 64500, "Example Net")
	}
	for ts := at.Add(-20 * time.Minute); ts.Before(at.Add(-8 * time.Minute)); ts = ts.Add(time.Minute) {
		add(ts, "203.0.113.9", 64501, "Other Net")
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	// The test server's users may not create users, so every query of the command carries the
	// setting instead: readonly = 1 refuses INSERT, ALTER and CREATE as a read-only user's profile does.
	readOnly := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1}))
	if err := conn.Exec(readOnly, "INSERT INTO key_ip_hours (hour, key_id, distinct_ips) VALUES (now(), 'probe', 1)"); err == nil {
		t.Fatal("an INSERT with readonly = 1 succeeded: the setting does not make the connection read-only")
	}
	cfgPath := filepath.Join(t.TempDir(), "keywatch.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "clickhouse:\n  addr: [%q]\n  database: %s\n", ch.Addr(t), db), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := dispatch(readOnly, []string{"detect", "--once", "--config", cfgPath, "--at", at.Format(time.RFC3339), "--format", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("keywatch detect --once as a read-only user: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	var runs []struct {
		Detector string            `json:"detector"`
		Error    string            `json:"error"`
		Findings []finding.Finding `json:"findings"`
	}
	if err := json.Unmarshal(out.Bytes(), &runs); err != nil {
		t.Fatalf("detect --once --format json: %v\n%s", err, out.String())
	}
	var names []string
	var leak []finding.Finding
	for _, r := range runs {
		names = append(names, r.Detector)
		if r.Detector == "leak" {
			leak = r.Findings
		}
	}
	if !slices.Equal(names, []string{"lingering", "spike", "leak", "hygiene"}) {
		t.Fatalf("runs of %v, want every detector", names)
	}
	if len(leak) != 1 || leak[0].KeyID != "kid_fan" || !strings.Contains(leak[0].Summary, "distinct IPs in the hour from 11:00 UTC") {
		t.Fatalf("leak findings %+v, want kid_fan's fan-out", leak)
	}
	var finalized uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM key_ip_hours").Scan(&finalized); err != nil || finalized != 0 {
		t.Fatalf("key_ip_hours holds %d rows (%v) after detect --once, want none", finalized, err)
	}
}

// TestReadinessWaitCannotTell: when neither ClickHouse (the CLI) nor keywatch (the GitHub
// Action) answers until the wait ends, the gate exits 1, not 3: it could not tell.
func TestReadinessWaitCannotTell(t *testing.T) {
	t.Setenv("KEYWATCH_CONFIG", "")
	t.Setenv("KEYWATCH_CLICKHOUSE_ADDR", freeAddr(t)) // nothing listens there
	var out, errOut bytes.Buffer
	if code := dispatch(t.Context(), []string{"readiness", "kid_old", "--wait", "2s", "--poll", "1s"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "cannot tell") {
		t.Fatalf("keywatch readiness --wait without ClickHouse: exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	vars := map[string]string{"vars.KEYWATCH_URL": "http://" + freeAddr(t), "secrets.KEYWATCH_READ_TOKEN": "t0ken", "inputs.old_key": "kid_old"}
	if gate := runGate(t, t.Context(), vars, map[string]string{"wait": "2s", "poll": "1s"}); gate.code != 1 || gate.stepOut != "verdict=unknown\n" ||
		!strings.Contains(gate.summary, "could not answer") {
		t.Fatalf("the gate without keywatch: exit %d, want 1\n%s\nsummary:\n%s", gate.code, gate.output, gate.summary)
	}
}
