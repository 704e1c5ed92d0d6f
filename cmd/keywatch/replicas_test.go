package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two replicas on one database and broker: both ingest, one leads (detects, alerts, sends), and
// when it is killed the other takes over: detection goes on, an alert that fires before the kill is
// neither posted nor revoked again, and one that fires during the takeover is not lost.
func TestTwoReplicasOneLeaderAndTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two daemons and waits out a takeover")
	}
	const webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ctx := context.Background()
	slackFake := newSlackRecorder(t)
	receiver := newWebhookReceiver(t, webhookSecret, false)
	db, kafka, httpA, cfgA := runSetup(t, 2, fmt.Sprintf(`
leader:
  session_timeout: 6s
detect:
  lingering: {schedule: "@every 1s"}
  spike: {schedule: "@every 1s"}
  leak: {schedule: ""}
  hygiene: {schedule: ""}
alerting:
  evaluate_interval: 1s
  group_wait: 0s
  group_interval: 1s
slack:
  api_url: %q
  default_channel: "#keywatch"
  min_interval: 100ms
revoke:
  webhook_url: %q
  policies: [{detector: "leak", mode: auto}]
`, slackFake.URL(), receiver.URL))
	t.Setenv("KEYWATCH_SLACK_TOKEN", "xoxb-test-token")
	t.Setenv("KEYWATCH_REVOKE_WEBHOOK_SECRET", webhookSecret)
	// The second replica differs only in its HTTP address.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	httpB := l.Addr().String()
	l.Close()
	raw, err := os.ReadFile(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	cfgB := cfgA + ".b.yaml"
	os.WriteFile(cfgB, []byte(strings.Replace(string(raw), httpA, httpB, 1)), 0o600)

	type replica struct {
		name, addr string
		p          *process
	}
	reps := []*replica{{name: "a", addr: httpA, p: startKeywatch(t, cfgA)}, {name: "b", addr: httpB, p: startKeywatch(t, cfgB)}}
	metrics := func(r *replica) string {
		resp, err := http.Get("http://" + r.addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	gauge := func(r *replica, name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(metrics(r))
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	alive := func() {
		for _, r := range reps {
			select {
			case err := <-r.p.exited:
				t.Fatalf("replica %s exited (%v):\n%s", r.name, err, r.p.out.String())
			default:
			}
		}
	}
	conn := ch.Conn(t, db)
	count := func(q string) uint64 {
		var n uint64
		_ = conn.QueryRow(ctx, q).Scan(&n)
		return n
	}
	leadingLines := func(r *replica) int { return strings.Count(r.p.out.String(), `"msg":"leading"`) }

	// Exactly one leads.
	var lead, follower *replica
	waitUntil(t, "one replica with keywatch_leader 1 and the other 0", func() bool {
		alive()
		ga, gb := gauge(reps[0], "keywatch_leader"), gauge(reps[1], "keywatch_leader")
		switch {
		case ga == 1 && gb == 0:
			lead, follower = reps[0], reps[1]
		case ga == 0 && gb == 1:
			lead, follower = reps[1], reps[0]
		default:
			return false
		}
		return true
	})
	t.Logf("leader: replica %s", lead.name)

	// Both ingest: events on both partitions, each stored once.
	stored := `keywatch_ingest_messages_total{result="stored",topic="auth-events"}`
	produced := 0
	waitUntil(t, "both replicas to store events", func() bool {
		alive()
		var values [][]byte
		for range 200 {
			values = append(values, fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","status":200,"request_id":"r%d"}`, time.Now().UnixMilli(), produced%7, produced))
			produced++
		}
		if err := kafka.Produce(ctx, "auth-events", values...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		return gauge(reps[0], stored) > 0 && gauge(reps[1], stored) > 0
	})
	waitUntil(t, fmt.Sprintf("%d events stored once", produced), func() bool {
		return count("SELECT count() FROM auth_events") == uint64(produced) && count("SELECT uniqExact(request_id) FROM auth_events") == uint64(produced)
	})

	// Detection runs, on the leader only, while it lives.
	followerLeads := leadingLines(follower)
	runs := count("SELECT count() FROM detector_runs")
	waitUntil(t, "detector runs while the first leader lives", func() bool {
		alive()
		return count("SELECT count() FROM detector_runs") >= runs+6
	})
	if leadingLines(follower) != followerLeads || gauge(follower, "keywatch_leader") != 0 || gauge(lead, "keywatch_leader") != 1 {
		t.Fatalf("leadership moved while the leader lived:\n%s:\n%s", follower.name, follower.p.out.String())
	}
	if leadingLines(lead) == 0 {
		t.Fatalf("the leader did not log leading:\n%s", lead.p.out.String())
	}

	// A leak alert fires under the first leader: one Slack message, one revoke sent.
	leak := func(key string) {
		t.Helper()
		if err := conn.Exec(ctx, `INSERT INTO findings (detected_at, run_id, detector, fingerprint, severity, score, key_id, client_id, rotation_id, summary, evidence)
			VALUES (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?, 'leak', ?, 'critical', 500, ?, 'acme', '', ?, '{}')`,
			time.Now().UnixMilli(), "run-"+key, "fp-leak-"+key, key, key+" used from a new network"); err != nil {
			t.Fatal(err)
		}
	}
	leak("kid_before")
	waitUntil(t, "the first alert posted and its revoke sent", func() bool {
		alive()
		return slackFake.count("chat.postMessage") >= 1 && receiver.count() >= 1 &&
			count("SELECT count() FROM actions FINAL WHERE key_id = 'kid_before' AND state = 'sent'") == 1
	})

	// SIGKILL the leader: the other takes over within its session timeout (6s) plus slack.
	lead.p.kill()
	killed := time.Now()
	reps = []*replica{follower}
	leak("kid_during") // fires while nobody leads
	waitUntilFor(t, "the other replica to report keywatch_leader 1", 30*time.Second, func() bool {
		alive()
		return gauge(follower, "keywatch_leader") == 1
	})
	t.Logf("takeover %s after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	runs = count("SELECT count() FROM detector_runs")
	waitUntil(t, "detector runs under the new leader", func() bool {
		alive()
		return count("SELECT count() FROM detector_runs") >= runs+6
	})

	// Nothing lost, nothing doubled: one message and one revoke per alert.
	waitUntil(t, "the alert raised during the takeover posted and revoked", func() bool {
		alive()
		return slackFake.count("chat.postMessage") >= 2 && receiver.count() >= 2
	})
	time.Sleep(3 * time.Second) // several evaluation and send cycles under the new leader
	if n := slackFake.count("chat.postMessage"); n != 2 {
		t.Errorf("%d Slack messages posted across the takeover, want 2 (one per alert)", n)
	}
	if ids, n := receiver.ids(), receiver.deliveries(); len(ids) != 2 || n != 2 {
		t.Errorf("revoke webhook-ids %v in %d deliveries, want 2 ids delivered once each", ids, n)
	}
	if out, err := follower.p.stop(); err != nil {
		t.Fatalf("replica %s after SIGTERM: %v\n%s", follower.name, err, out)
	}
}
