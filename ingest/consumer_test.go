package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/ingest/mapping"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

const (
	authTopic      = "auth-events"
	lifecycleTopic = "key-lifecycle"
	partitions     = 4
)

const testFingerprintKey = "test-fingerprint-key"

func newDecoder(t testing.TB) *ingest.Decoder {
	spec, _ := mapping.Builtin("keywatch")
	m, err := mapping.Compile("ingest.mapping", spec)
	if err != nil {
		t.Fatal(err)
	}
	return ingest.NewDecoder(m, ingest.NewFingerprinter([]byte(testFingerprintKey)), ingest.Limits{}, nil)
}

// env is one test's database, broker and consumer options.
type env struct {
	db    string
	conn  driver.Conn
	kafka *testbed.Kafka
	opts  ingest.Options
}

func newEnv(t testing.TB, logs io.Writer) *env {
	t.Helper()
	return newEnvOn(t, logs, testbed.KafkaOptions{})
}

// newEnvOn is newEnv on a broker secured as o says; the partitions and topics are the tests'.
func newEnvOn(t testing.TB, logs io.Writer, o testbed.KafkaOptions) *env {
	t.Helper()
	db, conn := schematest.NewDatabase(t, ch)
	o.Partitions, o.Topics = partitions, []string{authTopic, lifecycleTopic}
	k, err := testbed.StartKafkaWith(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	if logs == nil {
		logs = io.Discard
	}
	return &env{
		db: db, conn: conn, kafka: k,
		opts: ingest.Options{
			Brokers: k.Brokers, GroupID: "keywatch-test", AuthEventsTopic: authTopic, LifecycleTopic: lifecycleTopic,
			StartFrom: "earliest", BatchMaxRows: 5000, BatchMaxWait: 200 * time.Millisecond, MaxMessageBytes: 64 << 10,
			Decoder: newDecoder(t),
			Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	}
}

// run starts the consumer; the returned function stops it and reports what Run returned.
func (e *env) run(t testing.TB) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := ingest.NewConsumer(e.opts, e.conn)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func (e *env) count(t testing.TB, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := e.conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// lag returns how many produced messages of topic the group has not committed.
func (e *env) lag(t *testing.T, topic string) int64 {
	t.Helper()
	lag, err := e.kafka.CommittedLag(context.Background(), e.opts.GroupID, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return lag
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestIngestStoresEveryValidEventOnceAndDeadLettersTheRest(t *testing.T) {
	e := newEnv(t, nil)
	const total = 100_000
	malformed := []struct {
		reason string
		msg    func(i int) string
	}{
		{ingest.ReasonInvalidJSON, func(i int) string { return fmt.Sprintf(`{"ts": "2026-11-25T16:00:00Z", "key_id": "kid_%d", oops`, i) }},
		{ingest.ReasonWrongType, func(i int) string {
			return fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","key_id":"kid_%d","status":"200","request_id":"bad-%d"}`, i%50, i)
		}},
		{ingest.ReasonMissingField, func(i int) string {
			return fmt.Sprintf(`{"key_id":"kid_%d","outcome":"ok","request_id":"bad-%d"}`, i%50, i)
		}},
		{ingest.ReasonMissingField, func(i int) string {
			return fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","outcome":"ok","request_id":"bad-%d"}`, i)
		}},
	}
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	values := make([][]byte, total)
	wantDead := map[string]uint64{}
	for i := range total {
		if i%100 == 7 { // 1%, spread over every partition
			m := malformed[(i/100)%len(malformed)]
			values[i] = []byte(m.msg(i))
			wantDead[m.reason]++
			continue
		}
		ev := map[string]any{
			"ts": base.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano), "key_id": fmt.Sprintf("kid_%d", i%50),
			"client_id": fmt.Sprintf("client_%d", i%10), "status": []int{200, 200, 200, 401, 403, 429, 503}[i%7],
			"ip": fmt.Sprintf("198.51.100.%d", i%250), "user_agent": "sdk/1.0", "method": "GET", "route": "/v1/prices",
			"request_id": fmt.Sprintf("r-%d", i), "gateway": "edge-1",
		}
		values[i], _ = json.Marshal(ev)
	}
	if err := e.kafka.Produce(context.Background(), authTopic, values...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)

	var wantValid uint64 = total - total/100
	waitFor(t, "all events stored and all offsets committed", 3*time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events")+e.count(t, "SELECT count() FROM dead_letters") >= total &&
			e.lag(t, authTopic) == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}

	if got := e.count(t, "SELECT count() FROM auth_events"); got != wantValid {
		t.Errorf("auth_events holds %d rows, want %d", got, wantValid)
	}
	if got := e.count(t, "SELECT uniqExact(request_id) FROM auth_events"); got != wantValid {
		t.Errorf("auth_events holds %d distinct request ids, want %d (each valid event exactly once)", got, wantValid)
	}
	if got := e.count(t, "SELECT uniqExact(src_partition) FROM auth_events"); got != partitions {
		t.Errorf("events came from %d partitions, want %d", got, partitions)
	}
	if got := e.count(t, "SELECT countIf(outcome = 'invalid_key') FROM auth_events"); got == 0 {
		t.Error("no outcome was derived from status 401")
	}
	if got := e.count(t, "SELECT sum(requests) FROM key_minutes"); got != wantValid {
		t.Errorf("rollup counts %d requests, want %d", got, wantValid)
	}
	for reason, want := range wantDead {
		if got := e.count(t, "SELECT count() FROM dead_letters WHERE reason = ? AND topic = ?", reason, authTopic); got != want {
			t.Errorf("dead_letters holds %d rows with reason %s, want %d", got, reason, want)
		}
	}
	if got := e.count(t, "SELECT count() FROM dead_letters"); got != total/100 {
		t.Errorf("dead_letters holds %d rows, want %d", got, total/100)
	}
	if got := e.count(t, "SELECT uniqExact(partition, offset) FROM dead_letters"); got != total/100 {
		t.Errorf("dead_letters holds %d distinct offsets, want %d", got, total/100)
	}
	if got := e.count(t, "SELECT countIf(error = '' OR excerpt = '') FROM dead_letters"); got != 0 {
		t.Errorf("%d dead letters lack an error or excerpt", got)
	}
	if lag := e.lag(t, authTopic); lag != 0 {
		t.Errorf("committed offsets are %d behind the end offsets", lag)
	}
}

func TestIngestStoresLifecycleEvents(t *testing.T) {
	e := newEnv(t, nil)
	msgs := [][]byte{
		[]byte(`{"ts":"2026-11-25T10:00:00Z","type":"key.created","key_id":"kid_old","client_id":"acme"}`),
		[]byte(`{"ts":"2026-11-25T12:00:00Z","type":"key.rotation_started","key_id":"kid_old","client_id":"acme","new_key_id":"kid_new","grace_until":"2026-11-28T12:00:00Z"}`),
		[]byte(`{"ts":"2026-11-25T11:00:00Z","type":"key.created","key_id":"kid_new","client_id":"acme"}`),
		[]byte(`{"ts":"2026-11-25T12:00:00Z","type":"key.paused","key_id":"kid_old"}`),
	}
	if err := e.kafka.Produce(context.Background(), lifecycleTopic, msgs...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "lifecycle events stored", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM key_lifecycle_events")+e.count(t, "SELECT count() FROM dead_letters") == 4 &&
			e.lag(t, lifecycleTopic) == 0
	})
	_ = stop()
	var state string
	var grace *time.Time
	if err := e.conn.QueryRow(context.Background(), "SELECT toString(state), grace_until FROM key_lifecycle WHERE key_id = 'kid_old'").Scan(&state, &grace); err != nil {
		t.Fatal(err)
	}
	if state != "retiring" || grace == nil || !grace.Equal(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("kid_old is %s with grace %v, want retiring until 2026-11-28T12:00:00Z", state, grace)
	}
	if got := e.count(t, "SELECT count() FROM dead_letters WHERE reason = ? AND topic = ?", ingest.ReasonInvalidValue, lifecycleTopic); got != 1 {
		t.Fatalf("%d dead letters for the unknown lifecycle type, want 1", got)
	}
}

func TestRawAPIKeysReachNoTableAndNoLog(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, &logs)
	secrets := make([]string, 0, 40)
	var values [][]byte
	for i := range 40 {
		secret := fmt.Sprintf("sk_live_%s%04d", strings.Repeat("Q7", 8), i)
		secrets = append(secrets, secret)
		var msg string
		switch i % 5 {
		case 0: // the key only: its fingerprint becomes the key id
			msg = fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","api_key":%q,"status":200,"ip":"203.0.113.9"}`, secret)
		case 1: // key id and raw key
			msg = fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","key_id":"kid_x","api_key":%q,"outcome":"ok"}`, secret)
		case 2: // not JSON
			msg = fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","api_key":%q,`, secret)
		case 3: // missing ts
			msg = fmt.Sprintf(`{"api_key":%q,"outcome":"ok"}`, secret)
		case 4: // wrong type elsewhere, secret under another name
			msg = fmt.Sprintf(`{"ts":"2026-11-25T16:00:00Z","api_key":%q,"status":true,"note":"auth %s"}`, secret, secret)
		}
		values = append(values, []byte(msg))
	}
	if err := e.kafka.Produce(context.Background(), authTopic, values...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "all 40 messages stored", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events")+e.count(t, "SELECT count() FROM dead_letters") == 40 && e.lag(t, authTopic) == 0
	})
	_ = stop()

	fp := ingest.NewFingerprinter([]byte(testFingerprintKey)).Fingerprint(secrets[0])
	if got := e.count(t, "SELECT count() FROM auth_events WHERE key_id = ? AND key_fingerprint = ?", fp, fp); got != 1 {
		t.Fatalf("no event stored under the fingerprint of its api_key")
	}
	dump := strings.Join(slices.Collect(maps.Values(dumpEveryCell(t, e.db))), "\n")
	if !strings.Contains(dump, fp) || !strings.Contains(dump, "[redacted]") {
		t.Fatal("the database dump misses the fingerprint or the redacted excerpts: the dump is not reading the tables")
	}
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Fatalf("raw api key %s is stored in the database", s)
		}
		if strings.Contains(logs.String(), s) {
			t.Fatalf("raw api key %s is in the logs", s)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("no log lines were captured")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }
func (b *syncBuffer) Len() int       { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.Len() }

func TestHostileInputNeverStallsThePipeline(t *testing.T) {
	e := newEnv(t, nil)
	spec, _ := mapping.Builtin("keywatch")
	m, _ := mapping.Compile("ingest.mapping", spec)
	e.opts.Decoder = ingest.NewDecoder(m, ingest.NewFingerprinter([]byte(testFingerprintKey)),
		ingest.Limits{MaxAge: 30 * 24 * time.Hour, MaxSkew: time.Hour}, nil)
	now := time.Now().UTC()
	hostile := []struct {
		name, reason string
		msg          []byte
	}{
		{"invalid json", ingest.ReasonInvalidJSON, []byte(`{"ts": "` + now.Format(time.RFC3339) + `", "key_id": "k", "status": 200`)},
		{"not an object", ingest.ReasonWrongType, []byte(`"just a string"`)},
		{"status of the wrong type", ingest.ReasonWrongType, []byte(`{"ts":"` + now.Format(time.RFC3339) + `","key_id":"k","status":"200"}`)},
		{"key id of the wrong type", ingest.ReasonWrongType, []byte(`{"ts":"` + now.Format(time.RFC3339) + `","key_id":{"id":1},"status":200}`)},
		{"invalid utf-8", ingest.ReasonInvalidUTF8, []byte("{\"ts\":\"" + now.Format(time.RFC3339) + "\",\"key_id\":\"k\xc3\x28\",\"status\":200}")},
		{"1 MiB message", ingest.ReasonTooLarge, append(append([]byte(`{"ts":"`+now.Format(time.RFC3339)+`","key_id":"k","status":200,"pad":"`), bytes.Repeat([]byte("x"), 1<<20-100)...), '"', '}')},
		{"far past", ingest.ReasonInvalidValue, []byte(`{"ts":"2019-01-01T00:00:00Z","key_id":"k","status":200}`)},
		{"far future", ingest.ReasonInvalidValue, []byte(`{"ts":"` + now.Add(48*time.Hour).Format(time.RFC3339) + `","key_id":"k","status":200}`)},
		{"year 1970", ingest.ReasonInvalidValue, []byte(`{"ts":0,"key_id":"k","status":200}`)},
		{"unknown outcome", ingest.ReasonInvalidValue, []byte(`{"ts":"` + now.Format(time.RFC3339) + `","key_id":"k","outcome":"meh"}`)},
		{"ip that does not parse", ingest.ReasonInvalidValue, []byte(`{"ts":"` + now.Format(time.RFC3339) + `","key_id":"k","status":200,"ip":"300.1.2.3"}`)},
		{"empty message", ingest.ReasonInvalidJSON, []byte(``)},
		{"deeply nested", ingest.ReasonInvalidJSON, []byte(strings.Repeat("[", 100000))},
	}
	var values [][]byte
	for i, h := range hostile {
		values = append(values, h.msg)
		values = append(values, fmt.Appendf(nil, `{"ts":%q,"key_id":"k","status":200,"request_id":"ok-%d"}`, now.Format(time.RFC3339Nano), i))
	}
	w := e.kafka.Writer(authTopic)
	w.Balancer = &kafka.Hash{} // every message of this test on one partition, in order
	w.BatchBytes = 4 << 20
	var msgs []kafka.Message
	for _, v := range values {
		msgs = append(msgs, kafka.Message{Key: []byte("one"), Value: v})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	e.opts.MaxMessageBytes = 256 << 10
	stop := e.run(t)
	waitFor(t, "every message stored or dead-lettered", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events")+e.count(t, "SELECT count() FROM dead_letters") == uint64(len(values)) &&
			e.lag(t, authTopic) == 0
	})
	_ = stop()
	if got := e.count(t, "SELECT count() FROM auth_events"); got != uint64(len(hostile)) {
		t.Errorf("%d valid events stored, want %d", got, len(hostile))
	}
	rows, err := e.conn.Query(context.Background(), "SELECT reason, error FROM dead_letters ORDER BY offset")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var reason, detail string
		if err := rows.Scan(&reason, &detail); err != nil {
			t.Fatal(err)
		}
		if i < len(hostile) && reason != hostile[i].reason {
			t.Errorf("%s: dead-lettered as %s (%s), want %s", hostile[i].name, reason, detail, hostile[i].reason)
		}
	}
	if i != len(hostile) {
		t.Errorf("%d dead letters, want %d", i, len(hostile))
	}
}

func TestIngestRidesOutABrokerRestart(t *testing.T) {
	e := newEnv(t, nil)
	durable, err := testbed.StartDurableKafka(t.TempDir(), partitions, authTopic, lifecycleTopic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { durable.Close() })
	e.kafka, e.opts.Brokers = durable, durable.Brokers
	e.opts.SessionTimeout = 6 * time.Second

	const total = 40_000
	values := make([][]byte, total)
	for i := range values {
		values[i] = fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","status":200,"request_id":"r-%d"}`, time.Now().UnixMilli(), i%13, i)
	}
	ctx := context.Background()
	if err := durable.Produce(ctx, authTopic, values[:total/2]...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "the first events stored", time.Minute, func() bool { return e.count(t, "SELECT count() FROM auth_events") > 0 })
	if err := durable.Restart(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := durable.Produce(ctx, authTopic, values[total/2:]...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every event stored and committed after the broker came back", 2*time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events") >= total && e.lag(t, authTopic) == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if got := e.count(t, "SELECT count() FROM auth_events"); got != total {
		t.Errorf("auth_events holds %d rows, want %d", got, total)
	}
	if got := e.count(t, "SELECT uniqExact(request_id) FROM auth_events"); got != total {
		t.Errorf("%d distinct request ids, want %d", got, total)
	}
}

func TestARecreatedTopicIsReadInFull(t *testing.T) {
	e := newEnv(t, nil)
	// What an earlier incarnation of the topic left: offsets up to 1,000,000 stored.
	for p := range partitions {
		if err := e.conn.Exec(context.Background(), "INSERT INTO ingest_progress VALUES ('auth_events', ?, ?, 1000000)", authTopic, int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	var values [][]byte
	for i := range 1000 {
		values = append(values, fmt.Appendf(nil, `{"ts":%d,"key_id":"k","status":200,"request_id":"r-%d"}`, time.Now().UnixMilli(), i))
	}
	if err := e.kafka.Produce(context.Background(), authTopic, values...); err != nil {
		t.Fatal(err)
	}
	stop := e.run(t)
	waitFor(t, "the new topic's events stored", time.Minute, func() bool {
		return e.count(t, "SELECT count() FROM auth_events") == 1000 && e.lag(t, authTopic) == 0
	})
	_ = stop()
}
