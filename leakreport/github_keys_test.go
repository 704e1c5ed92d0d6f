package leakreport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/config"
)

// metaEndpoint is GitHub's meta endpoint of secret scanning keys as a test serves it: it lists the
// keys it is given, or answers status, and counts its requests.
type metaEndpoint struct {
	mu       sync.Mutex
	keys     map[string]*ecdsa.PrivateKey
	status   int
	body     string // overrides the listing when set
	requests int
}

func (m *metaEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	if m.status != 0 {
		w.WriteHeader(m.status)
		return
	}
	if m.body != "" {
		_, _ = w.Write([]byte(m.body))
		return
	}
	type published struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}
	var list struct {
		PublicKeys []published `json:"public_keys"`
	}
	for id, k := range m.keys {
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		list.PublicKeys = append(list.PublicKeys, published{id, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), true})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

func (m *metaEndpoint) set(f func(m *metaEndpoint)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *metaEndpoint) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPublishedGitHubKeys: reports are verified with the keys GitHub publishes, fetched when first
// needed and again for a key id not among them (at most every 5 minutes, so a flood of made-up
// ids costs one fetch), and hourly; a failed fetch keeps the keys fetched before.
func TestPublishedGitHubKeys(t *testing.T) {
	first, second := newKey(t), newKey(t)
	meta := &metaEndpoint{keys: map[string]*ecdsa.PrivateKey{"gh-1": first}}
	srv := httptest.NewServer(meta)
	defer srv.Close()
	b := newBed(t, config.LeakReports{GitHubKeys: []string{}, GitHubKeysURL: srv.URL + "/meta/public_keys/secret_scanning"})
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	b.h.keys.now = func() time.Time { return clock }
	body := githubBody(leakedA, "https://github.com/octo/leaky/blob/main/.env")

	if meta.count() != 0 {
		t.Fatal("the keys were fetched before any report needed them")
	}
	if code, resp := b.post(body, signed(t, body, first, "gh-1")); code != http.StatusOK || !strings.Contains(resp, "true_positive") {
		t.Fatalf("a report signed with a published key: %d %s", code, resp)
	}
	if code, _ := b.post(body, signed(t, body, first, "gh-1")); code != http.StatusOK || meta.count() != 1 {
		t.Fatalf("a second report: %d after %d fetches, want 200 after 1", code, meta.count())
	}

	// GitHub publishes a second key. Within 5 minutes of the last fetch an unknown id fetches
	// nothing (made-up ids cost nothing); after them, it fetches once.
	meta.set(func(m *metaEndpoint) { m.keys["gh-2"] = second })
	clock = clock.Add(keysMinRefresh - time.Second)
	for _, id := range []string{"gh-2", "made-up-1", "made-up-2"} {
		if code, resp := b.post(body, signed(t, body, second, id)); code != http.StatusUnauthorized || !strings.Contains(resp, "unknown GitHub public key identifier") {
			t.Fatalf("key id %s within 5 minutes of the last fetch: %d %s, want 401", id, code, resp)
		}
	}
	if meta.count() != 1 {
		t.Fatalf("%d fetches within 5 minutes, want 1", meta.count())
	}
	clock = clock.Add(time.Second)
	if code, resp := b.post(body, signed(t, body, second, "gh-2")); code != http.StatusOK || meta.count() != 2 {
		t.Fatalf("the new key id after 5 minutes: %d %s after %d fetches, want 200 after 2", code, resp, meta.count())
	}
	if code, _ := b.post(body, signed(t, body, second, "made-up-3")); code != http.StatusUnauthorized || meta.count() != 2 {
		t.Fatalf("a made-up id right after a fetch: %d after %d fetches, want 401 after 2", code, meta.count())
	}

	// GitHub's API fails: the keys fetched before stay in use after they are an hour old.
	meta.set(func(m *metaEndpoint) { m.status = http.StatusServiceUnavailable })
	clock = clock.Add(keysMaxAge)
	if code, resp := b.post(body, signed(t, body, first, "gh-1")); code != http.StatusOK || meta.count() != 3 {
		t.Fatalf("a known key while GitHub fails: %d %s after %d fetches, want 200 after 3", code, resp, meta.count())
	}
	if got := b.counter("keywatch_leak_report_key_fetches_total", "result", resultFailed); got != 1 {
		t.Errorf("failed fetches counted: %v, want 1", got)
	}
	if got := b.counter("keywatch_leak_report_key_fetches_total", "result", resultFetched); got != 2 {
		t.Errorf("fetches counted: %v, want 2", got)
	}
	if !strings.Contains(b.logs.String(), "fetching GitHub's secret scanning public keys failed") {
		t.Errorf("the failed fetch is not logged:\n%s", b.logs.String())
	}

	// GitHub withdraws the first key: an hour after the last successful fetch it is refused.
	meta.set(func(m *metaEndpoint) { m.status = 0; delete(m.keys, "gh-1") })
	clock = clock.Add(keysMinRefresh)
	if code, _ := b.post(body, signed(t, body, first, "gh-1")); code != http.StatusUnauthorized {
		t.Fatalf("a withdrawn key: %d, want 401", code)
	}
}

// TestStaticGitHubKeysAreTheFallback: with GitHub unreachable, reports signed with a key of
// leak_reports.github_keys are accepted, and an answer that is too large or holds a broken key is
// refused whole.
func TestStaticGitHubKeysAreTheFallback(t *testing.T) {
	meta := &metaEndpoint{status: http.StatusBadGateway}
	srv := httptest.NewServer(meta)
	defer srv.Close()
	b := newBed(t, config.LeakReports{GitHubKeysURL: srv.URL}) // the bed's static key, githubKeyID
	body := githubBody(leakedA, "https://github.com/octo/leaky/blob/main/.env")
	if code, resp := b.post(body, signed(t, body, b.priv, githubKeyID)); code != http.StatusOK || meta.count() != 0 {
		t.Fatalf("a report signed with a static key: %d %s after %d fetches, want 200 and no fetch", code, resp, meta.count())
	}

	for name, answer := range map[string]string{
		"too large":  `{"public_keys":[` + strings.Repeat(" ", keysMaxBody) + `]}`,
		"broken key": `{"public_keys":[{"key_identifier":"gh-9","key":"not PEM"}]}`,
		"no keys":    `{"public_keys":[]}`,
	} {
		meta.set(func(m *metaEndpoint) { m.status, m.body = 0, answer })
		if _, err := b.h.keys.fetch(t.Context()); err == nil {
			t.Errorf("%s: fetched, want refused", name)
		}
	}
}
