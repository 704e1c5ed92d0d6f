package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keywatch/keywatch/internal/api"
)

// countingRefusals counts refusals by reason.
type countingRefusals struct {
	mu      sync.Mutex
	reasons map[string]int
}

func (c *countingRefusals) Refuse(_ *http.Request, source, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reasons == nil {
		c.reasons = map[string]int{}
	}
	c.reasons[source+": "+reason]++
}

// watchedBody records whether anything read it.
type watchedBody struct {
	io.Reader
	read *bool
}

func (b watchedBody) Read(p []byte) (int, error) { *b.read = true; return b.Reader.Read(p) }

const (
	adminTok = "admin-token-0123456789abcdef0123456789"
	writeTok = "write-token-0123456789abcdef0123456789"
	readTok  = "read-token-0123456789abcdef01234567890"
)

func TestTokensHaveScopesAndAreCheckedBeforeTheBody(t *testing.T) {
	refusals := &countingRefusals{}
	served := 0
	silences := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		served++
		api.WriteJSON(w, http.StatusOK, map[string]string{})
	})
	h := routes{
		Guard:    api.Guard{Tokens: api.Tokens{Admin: adminTok, Write: writeTok, Read: readTok}, Refusals: refusals},
		Silences: silences,
		Reload:   func(context.Context) error { return nil },
	}.handler()
	cases := []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/v1/silences", "Bearer " + readTok, 200},
		{"GET", "/v1/silences", "bearer " + readTok, 200}, // RFC 7235: the scheme is case-insensitive
		{"GET", "/v1/silences", "BEARER  " + writeTok, 200},
		{"POST", "/v1/silences", "Bearer " + readTok, 403},
		{"POST", "/v1/silences", "Bearer " + writeTok, 200},
		{"DELETE", "/v1/silences/x", "Bearer " + readTok, 403},
		{"POST", "/-/reload", "Bearer " + writeTok, 403},
		{"POST", "/-/reload", "Bearer " + adminTok, 200},
		{"POST", "/v1/silences", "", 401},
		{"POST", "/v1/silences", "Basic " + adminTok, 401},
		{"POST", "/v1/silences", "Bearer " + adminTok[:len(adminTok)-1], 401},
		{"POST", "/v1/silences", "Bearer" + adminTok, 401},
	}
	for _, tc := range cases {
		read := false
		req := httptest.NewRequest(tc.method, tc.path, watchedBody{strings.NewReader(`{"matchers":{}}`), &read})
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		before := served
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.auth, rec.Code, rec.Body.String(), tc.want)
		}
		if refused := rec.Code == 401 || rec.Code == 403; refused && (read || served != before) {
			t.Errorf("%s %s with %q: refused, but its body was read (%v) or the handler ran", tc.method, tc.path, tc.auth, read)
		}
	}
	want := map[string]int{"api: missing or wrong token": 4, "api: token scope too low": 3}
	for k, n := range want {
		if refusals.reasons[k] != n {
			t.Errorf("refusals %v, want %v", refusals.reasons, want)
			break
		}
	}
}

func TestRefusedRequestsCostNoStorageWhateverTheirSize(t *testing.T) {
	refusals := &countingRefusals{}
	// Every handler panics: a refused request must reach none of them, so nothing is stored.
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("a refused request reached a handler") })
	h := routes{Guard: api.Guard{Tokens: api.Tokens{Admin: adminTok}, Refusals: refusals}, Revoke: boom, Rollback: boom, Silences: boom}.handler()
	long := strings.Repeat("a", 30<<10)
	for i := range 50 {
		req := httptest.NewRequest("POST", "/v1/keys/"+long+"/revoke", strings.NewReader(long))
		if i%2 == 0 {
			req.Header.Set("Authorization", "Bearer "+long)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || len(rec.Body.Bytes()) > 200 {
			t.Fatalf("request %d: %d %q, want a short 401", i, rec.Code, rec.Body.String())
		}
	}
	if n := refusals.reasons["api: missing or wrong token"]; n != 50 {
		t.Errorf("%d refusals counted, want 50", n)
	}
}

func TestReloadAndConfigNeedTheAdminToken(t *testing.T) {
	reloadErr := errors.New("these settings change only with a restart: kafka.brokers")
	h := routes{
		Guard:  api.Guard{Tokens: api.Tokens{Admin: "tok"}},
		Reload: func(context.Context) error { return reloadErr },
		Config: func() string { return "detect.spike.min_z 4\n" },
	}.handler()
	do := func(method, path, token string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, _ := do("POST", "/-/reload", ""); code != http.StatusUnauthorized {
		t.Errorf("/-/reload without a token: %d, want 401", code)
	}
	if code, body := do("POST", "/-/reload", "tok"); code != http.StatusUnprocessableEntity || !strings.Contains(body, "kafka.brokers") {
		t.Errorf("/-/reload refused: %d %s, want 422 naming the setting", code, body)
	}
	reloadErr = nil
	if code, _ := do("POST", "/-/reload", "tok"); code != 200 {
		t.Errorf("/-/reload: %d, want 200", code)
	}
	if code, body := do("GET", "/-/config", "tok"); code != 200 || body != "detect.spike.min_z 4\n" {
		t.Errorf("/-/config: %d %q", code, body)
	}
}
