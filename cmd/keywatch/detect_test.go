package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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

	// The straggler moves to the new key: after detect.lingering.quiet_for the key is safe.
	if err := kafka.Produce(context.Background(), "auth-events", event(-time.Minute, "kid_new", "", "198.51.100.77", "nightly-export/0.9")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "readiness says safe", func() bool {
		code, body := call("GET", "/v1/keys/kid_old/readiness", token, "")
		return code == 200 && strings.Contains(body, `"safe":true`)
	})
	out.Reset()
	if code := dispatch(context.Background(), []string{"readiness", "kid_old"}, &out, &errOut); code != 0 {
		t.Fatalf("keywatch readiness once safe: exit %d\n%s%s", code, out.String(), errOut.String())
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
