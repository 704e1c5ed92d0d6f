package digest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/slack-go/slack/slacktest"

	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/notify"
	"github.com/keywatch/keywatch/rotation"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

// newDB is a migrated database whose rollups ClickHouse's views fill from the events the tests
// insert.
func newDB(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	return conn
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// event is one authentication event as ingest stores it.
type event struct {
	TS       time.Time
	KeyID    string
	ClientID string
	IP       string // default 198.51.100.10
	UA       string // default test-sdk/1.0
}

func insertEvents(t *testing.T, conn driver.Conn, evs []event) {
	t.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.IP == "" {
			e.IP = "198.51.100.10"
		}
		if e.UA == "" {
			e.UA = "test-sdk/1.0"
		}
		ip := netip.MustParseAddr(e.IP)
		if err := b.Append(e.TS, e.KeyID, "", e.ClientID, "ok", uint16(200), ip.As16(), uint32(0), "", "",
			e.UA, "GET", "/v1/prices", fmt.Sprintf("r-%d", i), "edge-test", "auth-events", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func insertLifecycle(t *testing.T, conn driver.Conn, evs ...rotation.Event) {
	t.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, `INSERT INTO key_lifecycle_events (ts, type, key_id, client_id, new_key_id, grace_until, reason, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		var grace *time.Time
		if !e.GraceUntil.IsZero() {
			grace = &e.GraceUntil
		}
		if err := b.Append(e.TS, e.Type, e.KeyID, e.ClientID, e.NewKeyID, grace, e.Reason, "key-lifecycle", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func rotate(t *testing.T, conn driver.Conn, old, new, client string, started, deadline time.Time) {
	t.Helper()
	insertLifecycle(t, conn,
		rotation.Event{TS: started.Add(-30 * 24 * time.Hour), Type: rotation.KeyCreated, KeyID: old, ClientID: client},
		rotation.Event{TS: started, Type: rotation.KeyRotationStarted, KeyID: old, ClientID: client, NewKeyID: new, GraceUntil: deadline, Reason: "scheduled rotation"})
}

// calls returns caller's calls with key every interval in [from, to).
func calls(key string, caller event, from, to time.Time, interval time.Duration) []event {
	var out []event
	for ts := from; ts.Before(to); ts = ts.Add(interval) {
		e := caller
		e.TS, e.KeyID = ts, key
		out = append(out, e)
	}
	return out
}

// fakeSlack is slacktest's server with chat.postMessage and conversations.history of our own that
// keep the messages per channel.
type fakeSlack struct {
	srv *slacktest.Server

	mu       sync.Mutex
	messages map[string][]fakeMessage // channel -> messages
	seq      int
}

type fakeMessage struct {
	TS, Text, Blocks string
	Metadata         json.RawMessage
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{messages: map[string][]fakeMessage{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.postMessage)
		c.Handle("/conversations.history", f.history)
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeSlack) postMessage(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	ch := r.FormValue("channel")
	f.mu.Lock()
	f.seq++
	ts := fmt.Sprintf("%d.%06d", time.Now().Unix(), f.seq)
	m := fakeMessage{TS: ts, Text: r.FormValue("text"), Blocks: r.FormValue("blocks")}
	if md := r.FormValue("metadata"); md != "" {
		m.Metadata = json.RawMessage(md)
	}
	f.messages[ch] = append(f.messages[ch], m)
	f.mu.Unlock()
	answer(w, map[string]any{"ok": true, "channel": ch, "ts": ts})
}

func (f *fakeSlack) history(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := []map[string]any{}
	for _, m := range f.messages[r.FormValue("channel")] {
		v := map[string]any{"type": "message", "ts": m.TS, "text": m.Text}
		if m.Metadata != nil {
			v["metadata"] = m.Metadata
		}
		msgs = append(msgs, v)
	}
	answer(w, map[string]any{"ok": true, "messages": msgs, "has_more": false})
}

// posted returns the messages in channel whose text contains substr.
func (f *fakeSlack) posted(channel, substr string) []fakeMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeMessage
	for _, m := range f.messages[channel] {
		if strings.Contains(m.Text, substr) {
			out = append(out, m)
		}
	}
	return out
}

func (f *fakeSlack) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, ms := range f.messages {
		n += len(ms)
	}
	return n
}

func slackConfig(f *fakeSlack) config.Slack {
	cfg := config.Default().Slack
	cfg.Token = "xoxb-test"
	cfg.APIURL = f.srv.GetAPIURL()
	cfg.MinInterval = config.Duration(time.Millisecond)
	return cfg
}

// instance is a leader's digest and Slack sender over one database, as keywatch run builds them.
type instance struct {
	digest *Digest
	slack  *notify.Slack
	stop   func()
}

func newInstance(t *testing.T, conn driver.Conn, cfg config.Digest, slackCfg config.Slack, now func() time.Time) *instance {
	t.Helper()
	s := notify.NewSlack(conn, slackCfg, nil, quietLog())
	d := New(conn, cfg, slackCfg, detect.NewLingering(conn, config.Default().Detect.Lingering), s, quietLog())
	d.now = now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return &instance{digest: d, slack: s, stop: stop}
}

// waitFor polls cond until it holds; it fails the test after a generous deadline (a liveness
// guard, not a speed assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
