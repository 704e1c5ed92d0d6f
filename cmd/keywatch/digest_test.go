package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The leader posts the rotation digest and, once the last caller of a rotation's old key moved,
// one "safe to retire" message, from lifecycle events and traffic that came in through Kafka.
func TestDigestAndSafeToRetireFromTheDaemon(t *testing.T) {
	slackFake := newSlackRecorder(t)
	_, kafka, _, cfgPath := runSetup(t, 1, fmt.Sprintf(`
detect:
  leak: {schedule: ""}
  lingering: {schedule: "", quiet_for: 1m}
  spike: {schedule: ""}
  hygiene: {schedule: ""}
slack:
  api_url: %q
  default_channel: "#keywatch"
  min_interval: 100ms
digest:
  schedule: "*/2 * * * * *"
  nudge_schedule: "@every 1s"
`, slackFake.URL()))
	t.Setenv("KEYWATCH_SLACK_TOKEN", "xoxb-test-token")

	// acme started rotating kid_acme_old 30 minutes ago and moved within ten; globex is still on
	// its old key.
	ctx := context.Background()
	now := time.Now().UTC()
	at := func(ago time.Duration) string { return now.Add(-ago).Format(time.RFC3339Nano) }
	lifecycle := [][]byte{
		fmt.Appendf(nil, `{"ts":%q,"type":"key.rotation_started","key_id":"kid_acme_old","client_id":"acme","new_key_id":"kid_acme_new","grace_until":%q}`, at(30*time.Minute), now.Add(24*time.Hour).Format(time.RFC3339)),
		fmt.Appendf(nil, `{"ts":%q,"type":"key.rotation_started","key_id":"kid_globex_old","client_id":"globex","new_key_id":"kid_globex_new","grace_until":%q}`, at(30*time.Minute), now.Add(24*time.Hour).Format(time.RFC3339)),
	}
	var traffic [][]byte
	for i := range 20 {
		traffic = append(traffic,
			fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_acme_old","client_id":"acme","status":200}`, at(time.Duration(29-i/2)*time.Minute)),
			fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_acme_new","client_id":"acme","status":200}`, at(time.Duration(19-i/2)*time.Minute)),
			fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_globex_old","client_id":"globex","status":200}`, at(time.Duration(20-i)*time.Minute)))
	}
	if err := kafka.Produce(ctx, "key-lifecycle", lifecycle...); err != nil {
		t.Fatal(err)
	}
	if err := kafka.Produce(ctx, "auth-events", traffic...); err != nil {
		t.Fatal(err)
	}
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()

	waitUntil(t, "a digest of both rotations, acme's safe to retire", func() bool {
		return slackFake.posted("Rotation digest: 2 rotations in flight, 1 safe to retire") > 0
	})
	waitUntil(t, "Safe to retire kid_acme_old", func() bool { return slackFake.posted("Safe to retire `kid_acme_old`") > 0 })
	time.Sleep(4 * time.Second) // several nudge checks more
	if n, g := slackFake.posted("Safe to retire `kid_acme_old`"), slackFake.posted("Safe to retire `kid_globex_old`"); n != 1 || g != 0 {
		t.Fatalf(`"Safe to retire" posted %d times for acme (want 1) and %d for globex (want 0, still on its old key)`, n, g)
	}
}
