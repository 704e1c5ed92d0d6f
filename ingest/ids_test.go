package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/ingest"
)

// TestBadIDsAreDeadLettered sends events whose ids are too long or hold control, ANSI or bidi
// characters, between good events on one partition, through Kafka, the consumer and ClickHouse:
// each bad one is a dead letter whose error names the field, neither error nor excerpt holds a
// raw control character, every good event is stored (the pipeline goes on), and stored free
// text is cut to its bound.
func TestBadIDsAreDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	event := func(fields string) string {
		return `{"ts":"` + now + `","status":200,` + fields + `}`
	}
	bad := []struct {
		name, topic, msg, want string
	}{
		{"60 KB key id", authTopic, event(`"key_id":"` + strings.Repeat("k", 60<<10) + `"`), "key_id: 61440 bytes, longer than 256"},
		{"NUL in the key id", authTopic, event(`"key_id":"kid\u0000x"`), `key_id: holds a control character U+0000 at byte 3: "kid\x00x"`},
		{"CR LF in the key id", authTopic, event(`"key_id":"kid\r\n{\"level\":\"error\"}"`), `key_id: holds a control character U+000D at byte 3`},
		{"ANSI escape in the client id", authTopic, event(`"key_id":"kid_a","client_id":"acme\u001b[2J\u001b[31m"`), `client_id: holds a control character U+001B at byte 4`},
		{"raw bidi override in the key id", authTopic, event("\"key_id\":\"kid_\u202egnp.exe\""), `key_id: holds a bidi control U+202E at byte 4: "kid_\u202egnp.exe"`},
		{"escaped bidi override in the client id", authTopic, event(`"key_id":"kid_a","client_id":"acme\u202e"`), `client_id: holds a bidi control U+202E`},
		{"zero-width space in the key id", authTopic, event(`"key_id":"kid\u200b_a"`), `key_id: holds an invisible format character U+200B`},
		{"C1 control in the client id", authTopic, event(`"key_id":"kid_a","client_id":"a\u009bb"`), `client_id: holds a control character U+009B`},
		{"lifecycle: key id too long", lifecycleTopic, `{"ts":"` + now + `","type":"key.created","key_id":"` + strings.Repeat("k", 300) + `"}`, "key_id: 300 bytes, longer than 256"},
		{"lifecycle: ESC in the new key id", lifecycleTopic, `{"ts":"` + now + `","type":"key.rotation_started","key_id":"kid_a","new_key_id":"kid_b\u001b]8;;http://x\u0007"}`, "new_key_id: holds a control character U+001B"},
		{"lifecycle: bidi override in the client id", lifecycleTopic, `{"ts":"` + now + `","type":"key.created","key_id":"kid_c","client_id":"acme\u202e"}`, "client_id: holds a bidi control U+202E"},
	}
	longUA := "sdk/" + strings.Repeat("u", 2000)
	var auth, lifecycle []kafka.Message
	goods := 0
	for i, b := range bad {
		m := kafka.Message{Key: []byte("one"), Value: []byte(b.msg)}
		if b.topic == authTopic {
			good := event(fmt.Sprintf(`"key_id":"projects/p/locations/global/keys/k%d","client_id":"acme@billing:eu.1","user_agent":%q,"route":"/v1/prices","request_id":"good-%d"`, i, longUA, i))
			auth = append(auth, m, kafka.Message{Key: []byte("one"), Value: []byte(good)})
			goods++
		} else {
			lifecycle = append(lifecycle, m)
		}
	}
	lifecycle = append(lifecycle, kafka.Message{Key: []byte("one"), Value: []byte(`{"ts":"` + now + `","type":"key.created","key_id":"projects/p/locations/global/keys/k0","client_id":"acme@billing:eu.1"}`)})
	for topic, msgs := range map[string][]kafka.Message{authTopic: auth, lifecycleTopic: lifecycle} {
		w := e.kafka.Writer(topic)
		w.Balancer = &kafka.Hash{} // one partition, in order: good events follow bad ones
		w.BatchBytes = 4 << 20
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	stop := e.run(t)
	waitFor(t, "every message stored or dead-lettered", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events")+e.count(t, "SELECT count() FROM key_lifecycle_events")+
			e.count(t, "SELECT count() FROM dead_letters") == uint64(len(auth)+len(lifecycle)) &&
			e.lag(t, authTopic) == 0 && e.lag(t, lifecycleTopic) == 0
	})
	_ = stop()

	if got := e.count(t, "SELECT count() FROM auth_events WHERE startsWith(request_id, 'good-')"); got != uint64(goods) {
		t.Errorf("%d good events stored, want %d", got, goods)
	}
	if got := e.count(t, "SELECT count() FROM key_lifecycle_events WHERE key_id = 'projects/p/locations/global/keys/k0'"); got != 1 {
		t.Errorf("%d good lifecycle events stored, want 1", got)
	}
	if got := e.count(t, "SELECT max(length(user_agent)) FROM auth_events"); got != 512 {
		t.Errorf("longest stored user agent: %d bytes, want 512 (cut)", got)
	}
	for _, b := range bad {
		n := e.count(t, "SELECT count() FROM dead_letters WHERE topic = ? AND reason = ? AND position(error, ?) > 0", b.topic, ingest.ReasonInvalidValue, b.want)
		if n != 1 {
			t.Errorf("%s: %d dead letters of %s with reason invalid_value and an error holding %q, want 1", b.name, n, b.topic, b.want)
		}
	}
	rows, err := e.conn.Query(context.Background(), "SELECT error, excerpt FROM dead_letters")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	dead := 0
	for rows.Next() {
		var detail, excerpt string
		if err := rows.Scan(&detail, &excerpt); err != nil {
			t.Fatal(err)
		}
		dead++
		for _, s := range []string{detail, excerpt} {
			if i := strings.IndexFunc(s, func(r rune) bool {
				return r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r == 0x202e || r == 0x200b
			}); i >= 0 {
				t.Errorf("dead letter holds a raw control or bidi character at byte %d: %q", i, s)
			}
		}
		if len(excerpt) > 512+len("…") {
			t.Errorf("excerpt of %d bytes", len(excerpt))
		}
	}
	if dead != len(bad) {
		t.Errorf("%d dead letters, want %d", dead, len(bad))
	}
}
