package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/keywatch/keywatch/ingest"
)

// TestStoreAnswersWhatItHolds: the event store's read functions answer from events ingested
// through Kafka, as action, digest, leakreport and the demo read them.
func TestStoreAnswersWhatItHolds(t *testing.T) {
	e := newEnv(t, nil)
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	var values [][]byte
	add := func(i int, key, client, ip, ua, apiKey string) {
		ev := map[string]any{"ts": start.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano), "key_id": key,
			"client_id": client, "status": 200, "ip": ip, "user_agent": ua, "request_id": fmt.Sprintf("r-%d", i)}
		if apiKey != "" {
			ev["api_key"] = apiKey
		}
		b, _ := json.Marshal(ev)
		values = append(values, b)
	}
	for i := range 6 {
		add(i, "kid_old", "acme", "198.51.100.7", "cron/1.0", "")
	}
	for i := 6; i < 8; i++ {
		add(i, "kid_old", "acme", "198.51.100.8", "sdk/2.0", "")
	}
	for i := 8; i < 10; i++ {
		add(i, "kid_new", "acme", "198.51.100.8", "sdk/2.0", "sk_live_secret_value_1234567890")
	}
	values = append(values, []byte(`{"oops"`))
	if err := e.kafka.Produce(context.Background(), authTopic, values...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	ctx := context.Background()
	waitFor(t, "every message stored", time.Minute, func() bool {
		tot, err := ingest.ReadTotals(ctx, e.conn)
		return err == nil && tot.Events == 10 && tot.DeadLetters == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	if used, err := ingest.KeyUsed(ctx, e.conn, "kid_new"); err != nil || !used {
		t.Errorf("KeyUsed(kid_new) = %v, %v; want true", used, err)
	}
	if used, err := ingest.KeyUsed(ctx, e.conn, "kid_never"); err != nil || used {
		t.Errorf("KeyUsed(kid_never) = %v, %v; want false", used, err)
	}
	traffic, err := ingest.RotationTraffic(ctx, e.conn, "kid_old", "kid_new", start)
	if err != nil {
		t.Fatal(err)
	}
	if len(traffic) != 1 || traffic[0].ClientID != "acme" || traffic[0].OldRequests != 8 || traffic[0].NewRequests != 2 ||
		traffic[0].OldLastSeen.IsZero() || traffic[0].NewLastSeen.IsZero() {
		t.Errorf("RotationTraffic = %+v, want acme with 8 old and 2 new requests", traffic)
	}
	share, err := ingest.ShareOnKey(ctx, e.conn, "kid_new", "kid_old", start)
	if err != nil || share != 0.2 {
		t.Errorf("ShareOnKey = %v, %v; want 0.2", share, err)
	}
	callers, err := ingest.TopCallers(ctx, e.conn, "kid_old", start, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []ingest.Caller{{Addr: "198.51.100.7", UserAgent: "cron/1.0", Requests: 6}, {Addr: "198.51.100.8", UserAgent: "sdk/2.0", Requests: 2}}
	if fmt.Sprint(callers) != fmt.Sprint(want) {
		t.Errorf("TopCallers = %v, want %v", callers, want)
	}
	fp := ingest.NewFingerprinter([]byte(testFingerprintKey)).Fingerprint("sk_live_secret_value_1234567890")
	keys, err := ingest.KeysOfFingerprints(ctx, e.conn, []string{fp, "fp_unknown"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[fp].KeyID != "kid_new" || keys[fp].ClientID != "acme" {
		t.Errorf("KeysOfFingerprints = %v, want the fingerprint's key kid_new of acme", keys)
	}
}
