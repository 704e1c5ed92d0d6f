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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeApprover struct {
	mu       sync.Mutex
	approved []string
	rejected []string
	answer   string // what Approve says; "revoke of kid_x queued" when empty
}

func (a *fakeApprover) Approve(_ context.Context, actionID string, by Person) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if by.Source != "slack" {
		return "", fmt.Errorf("approval from %q, want slack", by.Source)
	}
	a.approved = append(a.approved, actionID+" by "+by.ID)
	if a.answer != "" {
		return a.answer, nil
	}
	return "revoke of kid_x queued", nil
}

func (a *fakeApprover) Rejected(_ context.Context, source, reason, _ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rejected = append(a.rejected, source+":"+reason)
}

// fakeRefuser records the refusals before authentication, as source:reason.
type fakeRefuser struct {
	mu      sync.Mutex
	refused []string
}

func (f *fakeRefuser) Refuse(_ *http.Request, source, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = append(f.refused, source+":"+reason)
}

func (f *fakeRefuser) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refused...)
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

	approver, refuser := &fakeApprover{}, &fakeRefuser{}
	h := NewInteractions(newDB(t), interactionsConfig(), approver, refuser, nil, quietLog())
	now := time.Now()
	h.now = func() time.Time { return now }

	valid := click("U_OK", ApproveActionID, responses.URL)
	validReq := func() *http.Request { return signedRequest(valid, now, testSecret) }
	tampered := signedRequest(valid, now, testSecret)
	tampered.Body = io.NopCloser(strings.NewReader(click("U_OK", ApproveActionID, responses.URL+"/x")))
	noSignature := signedRequest(valid, now, testSecret)
	noSignature.Header.Del("X-Slack-Signature")
	huge := signedRequest(strings.Repeat("x", maxBody+1), now, testSecret)
	hugeUnannounced := signedRequest(strings.Repeat("x", maxBody+1), now, testSecret)
	hugeUnannounced.ContentLength = -1 // read, and cut at the limit

	// refused: told to the Refuser (before authentication); audited: told to the Approver.
	cases := []struct {
		name             string
		req              *http.Request
		status           int
		refused, audited string
	}{
		{"valid click", validReq(), http.StatusOK, "", ""},
		{"replayed body", validReq(), http.StatusForbidden, "replay", ""},
		{"bad signature", signedRequest(click("U_OK", ApproveActionID, ""), now, "wrong-secret"), http.StatusUnauthorized, "bad_signature", ""},
		{"no signature", noSignature, http.StatusUnauthorized, "bad_signature", ""},
		{"tampered body", tampered, http.StatusUnauthorized, "bad_signature", ""},
		{"too large", huge, http.StatusRequestEntityTooLarge, "body_too_large", ""},
		{"too large, no Content-Length", hugeUnannounced, http.StatusRequestEntityTooLarge, "body_too_large", ""},
		{"stale timestamp", signedRequest(click("U_OK", ApproveActionID, ""), now.Add(-6*time.Minute), testSecret), http.StatusUnauthorized, "stale_timestamp", ""},
		{"future timestamp", signedRequest(click("U_OK", ApproveActionID, ""), now.Add(6*time.Minute), testSecret), http.StatusUnauthorized, "stale_timestamp", ""},
		{"user not allow-listed", signedRequest(click("U_EVIL", ApproveActionID, ""), now, testSecret), http.StatusForbidden, "", "user_not_allowed"},
		{"unknown action", signedRequest(click("U_OK", "something_else", ""), now.Add(time.Second), testSecret), http.StatusBadRequest, "", ""},
		{"grafana link", signedRequest(click("U_OK", grafanaActionID, ""), now.Add(2*time.Second), testSecret), http.StatusOK, "", ""},
	}
	var wantRefused, wantAudited []string
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, c.req)
		if rec.Code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.status, rec.Body.String())
		}
		if c.refused != "" {
			wantRefused = append(wantRefused, "slack:"+c.refused)
		}
		if c.audited != "" {
			wantAudited = append(wantAudited, "slack:"+c.audited)
		}
		approver.mu.Lock()
		audited := slices.Clone(approver.rejected)
		approver.mu.Unlock()
		if got := refuser.all(); !slices.Equal(got, wantRefused) || !slices.Equal(audited, wantAudited) {
			t.Errorf("%s: refused %v and audited %v, want %v and %v", c.name, got, audited, wantRefused, wantAudited)
		}
	}
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if len(approver.approved) != 1 || approver.approved[0] != "wh_1 by U_OK" {
		t.Fatalf("want one approval of wh_1 by U_OK, got %v", approver.approved)
	}
	select {
	case body := <-shown:
		if !strings.Contains(body, `"replace_original":true`) || !strings.Contains(body, "Clicked by \\u003c@U_OK\\u003e: `revoke of kid_x queued`") {
			t.Fatalf("the message update does not show the approval: %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not updated through response_url")
	}
}

// Without a signing secret nothing is accepted: an empty HMAC key would let anyone sign.
func TestInteractionsOffWithoutSecret(t *testing.T) {
	cfg := interactionsConfig()
	cfg.SigningSecret = ""
	approver, refuser := &fakeApprover{}, &fakeRefuser{}
	h := NewInteractions(newDB(t), cfg, approver, refuser, nil, quietLog())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signedRequest(click("U_OK", ApproveActionID, ""), time.Now(), ""))
	approver.mu.Lock()
	defer approver.mu.Unlock()
	if got := refuser.all(); rec.Code != http.StatusForbidden || len(approver.approved) != 0 || len(approver.rejected) != 0 || !slices.Equal(got, []string{"slack:off"}) {
		t.Fatalf("status %d, approved %v, audited %v, refused %v: want 403, none, none, slack:off", rec.Code, approver.approved, approver.rejected, got)
	}
}
