package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
)

type fakeApprover struct {
	mu       sync.Mutex
	approved []string
	rejected []string
}

func (a *fakeApprover) Approve(_ context.Context, actionID, user, _ string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.approved = append(a.approved, actionID+" by "+user)
	return "revoke of kid_x queued", nil
}

func (a *fakeApprover) Rejected(_ context.Context, source, reason, _ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rejected = append(a.rejected, source+":"+reason)
}

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// click is the form body of a "Revoke now" click by user.
func click(user, actionID, responseURL string) string {
	p := map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "name": "name-" + user},
		"response_url": responseURL,
		"message":      map[string]any{"type": "message", "text": "leak on kid_x", "blocks": []any{}},
		"actions":      []any{map[string]any{"type": "button", "action_id": actionID, "value": "wh_1", "block_id": "b"}},
	}
	b, _ := json.Marshal(p)
	return "payload=" + url.QueryEscape(string(b))
}

func signedRequest(body string, at time.Time, secret string) *http.Request {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", ts)
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return r
}

func TestInteractions(t *testing.T) {
	shown := make(chan string, 4)
	responses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shown <- string(b)
	}))
	defer responses.Close()

	cfg := config.Default().Slack
	cfg.SigningSecret = testSecret
	cfg.Approvers = []string{"U_OK"}
	approver := &fakeApprover{}
	h := NewInteractions(cfg, approver, nil, quietLog())
	now := time.Now()
	h.now = func() time.Time { return now }

	valid := click("U_OK", ApproveActionID, responses.URL)
	validReq := func() *http.Request { return signedRequest(valid, now, testSecret) }
	tampered := signedRequest(valid, now, testSecret)
	tampered.Body = io.NopCloser(strings.NewReader(click("U_OK", ApproveActionID, responses.URL+"/x")))

	cases := []struct {
		name   string
		req    *http.Request
		status int
		reason string
	}{
		{"valid click", validReq(), http.StatusOK, ""},
		{"replayed body", validReq(), http.StatusForbidden, "replay"},
		{"bad signature", signedRequest(click("U_OK", ApproveActionID, ""), now, "wrong-secret"), http.StatusUnauthorized, "bad_signature"},
		{"tampered body", tampered, http.StatusUnauthorized, "bad_signature"},
		{"stale timestamp", signedRequest(click("U_OK", ApproveActionID, ""), now.Add(-6*time.Minute), testSecret), http.StatusUnauthorized, "stale_timestamp"},
		{"future timestamp", signedRequest(click("U_OK", ApproveActionID, ""), now.Add(6*time.Minute), testSecret), http.StatusUnauthorized, "stale_timestamp"},
		{"user not allow-listed", signedRequest(click("U_EVIL", ApproveActionID, ""), now, testSecret), http.StatusForbidden, "user_not_allowed"},
		{"unknown action", signedRequest(click("U_OK", "something_else", ""), now.Add(time.Second), testSecret), http.StatusBadRequest, "unknown_action"},
	}
	wantRejected := 0
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.req)
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.status, rec.Body.String())
		}
		if c.reason != "" {
			wantRejected++
			approver.mu.Lock()
			got := approver.rejected
			approver.mu.Unlock()
			if len(got) != wantRejected || got[len(got)-1] != "slack:"+c.reason {
				t.Errorf("%s: Rejected calls %v, want the last to be slack:%s", c.name, got, c.reason)
			}
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 1 || approver.approved[0] != "wh_1 by U_OK" {
		t.Fatalf("want one approval of wh_1 by U_OK, got %v", approver.approved)
	}
	select {
	case body := <-shown:
		if !strings.Contains(body, `"replace_original":true`) || !strings.Contains(body, `Clicked by \u003c@U_OK\u003e: revoke of kid_x queued`) {
			t.Fatalf("the message update does not show the approval: %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not updated through response_url")
	}
}

// Without a signing secret nothing is accepted: an empty HMAC key would let anyone sign.
func TestInteractionsOffWithoutSecret(t *testing.T) {
	cfg := config.Default().Slack
	cfg.Approvers = []string{"U_OK"}
	approver := &fakeApprover{}
	h := NewInteractions(cfg, approver, nil, quietLog())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signedRequest(click("U_OK", ApproveActionID, ""), time.Now(), ""))
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if rec.Code != http.StatusForbidden || len(approver.approved) != 0 || len(approver.rejected) != 1 {
		t.Fatalf("status %d, approved %v, rejected %v: want 403, none, one", rec.Code, approver.approved, approver.rejected)
	}
}
