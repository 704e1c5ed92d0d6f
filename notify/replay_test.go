package notify

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

func interactionsConfig() config.Slack {
	cfg := config.Default().Slack
	cfg.SigningSecret = testSecret
	cfg.Approvers = []string{"U_OK"}
	return cfg
}

// upperHex is req's twin whose signature has its hex digits in upper case: the same MAC.
func upperHex(req *http.Request, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	r.Header = req.Header.Clone()
	r.Header.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(req.Header.Get("X-Slack-Signature"), "v0=")))
	return r
}

// countingReplays counts the calls to the shared replay store.
type countingReplays struct {
	inner replayRecorder
	calls atomic.Int32
}

func (c *countingReplays) record(ctx context.Context, mac string, ts time.Time) (bool, error) {
	c.calls.Add(1)
	return c.inner.record(ctx, mac, ts)
}

// Issue #14 (4): a replay whose signature differs only in the case of its hex digits is the same
// signed request, and is refused.
func TestInteractionsReplayWithChangedHexCase(t *testing.T) {
	approver, refuser := &fakeApprover{}, &fakeRefuser{}
	h := NewInteractions(newDB(t), interactionsConfig(), approver, refuser, nil, quietLog())
	now := time.Now()
	h.now = func() time.Time { return now }
	body := click("U_OK", ApproveActionID, "")
	first := signedRequest(body, now, testSecret)
	replay := upperHex(first, body)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, first)
	if rec.Code != http.StatusOK {
		t.Fatalf("first click: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, replay)
	if rec.Code != http.StatusForbidden {
		t.Errorf("replay with upper-case hex: %d %s, want 403", rec.Code, rec.Body)
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 1 {
		t.Errorf("approvals %v: want one", approver.approved)
	}
	if got := refuser.all(); len(got) != 1 || got[0] != "slack:replay" {
		t.Errorf("refused %v, want slack:replay", got)
	}
}

// Issue #14 (4): a replay sent to another replica (another Interactions on the same ClickHouse,
// its memory empty) is refused too, in either hex case.
func TestInteractionsReplayOnAnotherReplica(t *testing.T) {
	conn := newDB(t)
	approver := &fakeApprover{}
	now := time.Now()
	a := NewInteractions(conn, interactionsConfig(), approver, &fakeRefuser{}, nil, quietLog())
	a.now = func() time.Time { return now }
	body := click("U_OK", ApproveActionID, "")

	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, signedRequest(body, now, testSecret))
	if rec.Code != http.StatusOK {
		t.Fatalf("first click on replica a: %d %s", rec.Code, rec.Body)
	}
	for name, replay := range map[string]*http.Request{
		"same signature":       signedRequest(body, now, testSecret),
		"upper-case signature": upperHex(signedRequest(body, now, testSecret), body),
	} {
		b := NewInteractions(conn, interactionsConfig(), approver, &fakeRefuser{}, nil, quietLog())
		b.now = a.now
		rec = httptest.NewRecorder()
		b.ServeHTTP(rec, replay)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s replayed on a fresh replica: %d %s, want 403", name, rec.Code, rec.Body)
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 1 {
		t.Errorf("approvals %v: want one", approver.approved)
	}
}

// The same signed request reaching several replicas at once is approved by one of them: each
// records the MAC, then reads which replica recorded it first.
func TestInteractionsReplayRaceBetweenReplicas(t *testing.T) {
	conn := newDB(t)
	approver := &fakeApprover{}
	now := time.Now()
	body := click("U_OK", ApproveActionID, "")
	const replicas = 6
	codes := make([]int, replicas)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range replicas {
		h := NewInteractions(conn, interactionsConfig(), approver, &fakeRefuser{}, nil, quietLog())
		h.now = func() time.Time { return now }
		req := signedRequest(body, now, testSecret)
		if i%2 == 1 {
			req = upperHex(req, body)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		}()
	}
	close(start)
	wg.Wait()
	ok, refused := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusForbidden:
			refused++
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if ok != 1 || refused != replicas-1 || len(approver.approved) != 1 {
		t.Fatalf("answers %v, approvals %v: want one 200 and %d replays refused", codes, approver.approved, replicas-1)
	}
	// ClickHouse kept the first insert of the MAC only (its deduplication token).
	var rows uint64
	if err := conn.QueryRow(context.Background(), `SELECT count() FROM slack_interaction_macs`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows recorded (%v), want 1", rows, err)
	}
}

// unreachable is a connection to a port nothing listens on.
func unreachable(t *testing.T) driver.Conn {
	t.Helper()
	ports, err := testbed.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().ClickHouse
	cfg.Addr = []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}
	conn, err := schema.Open(cfg, "default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Issue #14 (4): requests refused before authentication write nothing and wait on nothing: with
// ClickHouse unreachable they are refused without a call to the replay store or the Approver, and
// told to the Refuser only.
func TestInteractionsUnauthenticatedRefusalsWriteNothing(t *testing.T) {
	conn := unreachable(t)
	now := time.Now()
	body := click("U_OK", ApproveActionID, "")
	noTimestamp := signedRequest(body, now, testSecret)
	noTimestamp.Header.Del("X-Slack-Request-Timestamp")
	malformed := signedRequest(body, now, testSecret)
	malformed.Header.Set("X-Slack-Signature", "v0=zz"+strings.Repeat("0", 62))
	for _, c := range []struct {
		name   string
		secret string
		req    *http.Request
		status int
		reason string
	}{
		{"interactions off", "", signedRequest(body, now, ""), http.StatusForbidden, "off"},
		{"forged", testSecret, signedRequest(body, now, "wrong-secret"), http.StatusUnauthorized, "bad_signature"},
		{"malformed signature", testSecret, malformed, http.StatusUnauthorized, "bad_signature"},
		{"stale", testSecret, signedRequest(body, now.Add(-time.Hour), testSecret), http.StatusUnauthorized, "stale_timestamp"},
		{"no timestamp", testSecret, noTimestamp, http.StatusUnauthorized, "bad_signature"},
	} {
		approver, refuser := &fakeApprover{}, &fakeRefuser{}
		cfg := interactionsConfig()
		cfg.SigningSecret = c.secret
		h := NewInteractions(conn, cfg, approver, refuser, nil, quietLog())
		store := &countingReplays{inner: h.replays}
		h.replays = store
		h.now = func() time.Time { return now }
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.req)
		if rec.Code != c.status {
			t.Errorf("%s: %d, want %d", c.name, rec.Code, c.status)
		}
		if n := store.calls.Load(); n != 0 {
			t.Errorf("%s: the replay store (ClickHouse) was called %d times", c.name, n)
		}
		approver.mu.Lock()
		if len(approver.rejected) != 0 || len(approver.approved) != 0 {
			t.Errorf("%s: the Approver was called (audited %v, approved %v): a refusal before authentication must write nothing", c.name, approver.rejected, approver.approved)
		}
		approver.mu.Unlock()
		if got := refuser.all(); len(got) != 1 || got[0] != "slack:"+c.reason {
			t.Errorf("%s: refused %v, want slack:%s", c.name, got, c.reason)
		}
	}
}

// A signed request that cannot be checked for replays (ClickHouse unreachable) is refused with 503
// and does not reach the Approver; the same request is checked again when repeated.
func TestInteractionsReplayCheckUnavailable(t *testing.T) {
	approver, refuser := &fakeApprover{}, &fakeRefuser{}
	h := NewInteractions(unreachable(t), interactionsConfig(), approver, refuser, nil, quietLog())
	store := &countingReplays{inner: h.replays}
	h.replays = store
	now := time.Now()
	h.now = func() time.Time { return now }
	body := click("U_OK", ApproveActionID, "")
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, signedRequest(body, now, testSecret))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%d %s, want 503", rec.Code, rec.Body)
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 0 || len(approver.rejected) != 0 || store.calls.Load() != 2 || len(refuser.all()) != 0 {
		t.Fatalf("approved %v, audited %v, %d store calls, refused %v: want none, none, 2 (not remembered as received), none",
			approver.approved, approver.rejected, store.calls.Load(), refuser.all())
	}
}
