package leakreport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

const (
	fingerprintKey = "test-fingerprint-key-0123456789"
	githubKeyID    = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"
	bearerToken    = "in-house-scanner-token"
	// Raw secrets of two keys seen in traffic, and one keywatch never saw.
	leakedA = "sk_live_4f9a0c1d2e3b4a5968778695a4b3c2d1"
	leakedB = "sk_live_b7e6d5c4b3a29180f7e6d5c4b3a29180"
	unseen  = "sk_live_00000000000000000000000000000000"
)

// recorder is the audit at the edge: it records every rejection.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) Refuse(_ *http.Request, source, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, source+"|"+reason)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// bed is a migrated database with traffic of keys A and B, and a handler over it.
type bed struct {
	t        *testing.T
	conn     driver.Conn
	h        *Handler
	priv     *ecdsa.PrivateKey
	rejected *recorder
	metrics  *Metrics
	reg      *prometheus.Registry
	logs     *bytes.Buffer
	now      time.Time
}

func newBed(t *testing.T, cfg config.LeakReports) *bed {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	b := &bed{t: t, conn: conn, rejected: &recorder{}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{},
		now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	b.metrics = NewMetrics(b.reg)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b.priv = priv
	if cfg.GitHubKeys == nil {
		cfg.GitHubKeys = []string{writePublicKey(t, &priv.PublicKey)}
		cfg.GitHubKeyIDs = []string{githubKeyID}
	}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := New(b.conn, cfg, fingerprintKey, b.rejected, b.metrics, log)
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return b.now }
	b.h = h
	b.seed()
	return b
}

func writePublicKey(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "github.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// seed stores traffic as ingest would: key A first used by another client, then by acme-billing;
// key B by globex. The raw secrets are stored only as their fingerprints.
func (b *bed) seed() {
	b.t.Helper()
	ctx := context.Background()
	fp := ingest.NewFingerprinter([]byte(fingerprintKey))
	batch, err := b.conn.PrepareBatch(ctx, `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	user_agent, method, route, request_id, gateway)`)
	if err != nil {
		b.t.Fatal(err)
	}
	ip := netip.MustParseAddr("198.51.100.10").As16()
	rows := []struct {
		ts            time.Time
		key, fp, clnt string
	}{
		{b.now.Add(-48 * time.Hour), "kid_live_a", fp.Fingerprint(leakedA), "old-owner"},
		{b.now.Add(-2 * time.Hour), "kid_live_a", fp.Fingerprint(leakedA), "acme-billing"},
		{b.now.Add(-3 * time.Hour), "kid_live_b", fp.Fingerprint(leakedB), "globex"},
		{b.now.Add(-time.Hour), "kid_live_c", "", "initech"}, // an event without a raw key
	}
	for i, r := range rows {
		if err := batch.Append(r.ts, r.key, r.fp, r.clnt, "ok", uint16(200), ip, "test-sdk/1.0", "GET", "/v1/prices", fmt.Sprint("r-", i), "edge-1"); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		b.t.Fatal(err)
	}
}

// post sends body with the given headers and returns the status and body.
func (b *bed) post(body string, headers map[string]string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/v1/leaks", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// signed returns GitHub's headers for body signed with key under keyID.
func signed(t *testing.T, body string, key *ecdsa.PrivateKey, keyID string) map[string]string {
	t.Helper()
	digest := sha256.Sum256([]byte(body))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{headerKeyID: keyID, headerSignature: base64.StdEncoding.EncodeToString(sig)}
}

func (b *bed) count(query string, args ...any) uint64 {
	b.t.Helper()
	var n uint64
	if err := b.conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		b.t.Fatal(err)
	}
	return n
}

func (b *bed) findings() uint64 {
	return b.count("SELECT count() FROM findings WHERE detector = 'leak_report'")
}
func (b *bed) runs() uint64 {
	return b.count("SELECT count() FROM detector_runs WHERE detector = 'leak_report'")
}

// counter reads one counter from the bed's registry.
func (b *bed) counter(name, label, value string) float64 {
	b.t.Helper()
	families, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func githubBody(token, url string) string {
	return fmt.Sprintf(`[{"token":%q,"type":"keywatch_api_key","url":%q,"source":"content"}]`, token, url)
}

func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func TestReports(t *testing.T) {
	b := newBed(t, config.LeakReports{Token: bearerToken})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bodyA := githubBody(leakedA, "https://github.com/octo/leaky/blob/main/.env")
	bodyB := `{"token":"` + leakedB + `","type":"internal_scan","url":"https://wiki.example.com/page/42","source":"wiki"}`
	unknownBody := githubBody(unseen, "https://github.com/octo/other/blob/main/x")

	cases := []struct {
		name        string
		body        string
		headers     func(body string) map[string]string
		wantCode    int
		wantLabels  []Label // nil: not checked
		wantErr     string  // part of the error text
		wantStored  uint64  // leak_report finding rows after the case
		wantRejects int     // Rejected calls after the case
	}{
		{
			name: "signed report of a known key", body: bodyA,
			headers:    func(body string) map[string]string { return signed(t, body, b.priv, githubKeyID) },
			wantCode:   http.StatusOK,
			wantLabels: []Label{{TokenHash: hash(leakedA), TokenType: "keywatch_api_key", Label: "true_positive"}},
			wantStored: 1,
		},
		{
			name: "the same report again", body: bodyA,
			headers:    func(body string) map[string]string { return signed(t, body, b.priv, githubKeyID) },
			wantCode:   http.StatusOK,
			wantLabels: []Label{{TokenHash: hash(leakedA), TokenType: "keywatch_api_key", Label: "true_positive"}},
			wantStored: 1,
		},
		{
			name: "signed by another key", body: githubBody(leakedB, "https://github.com/x/y"),
			headers:  func(body string) map[string]string { return signed(t, body, other, githubKeyID) },
			wantCode: http.StatusUnauthorized, wantErr: "bad signature", wantStored: 1, wantRejects: 1,
		},
		{
			name: "signature over another body", body: githubBody(leakedB, "https://github.com/x/y"),
			headers:  func(string) map[string]string { return signed(t, bodyA, b.priv, githubKeyID) },
			wantCode: http.StatusUnauthorized, wantErr: "bad signature", wantStored: 1, wantRejects: 2,
		},
		{
			name: "unknown key identifier", body: githubBody(leakedB, "https://github.com/x/y"),
			headers:  func(body string) map[string]string { return signed(t, body, b.priv, "f9525bf080f75b35") },
			wantCode: http.StatusUnauthorized, wantErr: "unknown GitHub public key identifier", wantStored: 1, wantRejects: 3,
		},
		{
			name: "signature header missing", body: githubBody(leakedB, "https://github.com/x/y"),
			headers:  func(string) map[string]string { return map[string]string{headerKeyID: githubKeyID} },
			wantCode: http.StatusUnauthorized, wantErr: "missing Github-Public-Key-Signature", wantStored: 1, wantRejects: 4,
		},
		{
			name: "signature not base64", body: githubBody(leakedB, "https://github.com/x/y"),
			headers: func(string) map[string]string {
				return map[string]string{headerKeyID: githubKeyID, headerSignature: "not base64!"}
			},
			wantCode: http.StatusUnauthorized, wantErr: "signature is not base64", wantStored: 1, wantRejects: 5,
		},
		{
			name: "no headers at all", body: githubBody(leakedB, "https://github.com/x/y"),
			headers:  func(string) map[string]string { return nil },
			wantCode: http.StatusUnauthorized, wantErr: "missing signature or bearer token", wantStored: 1, wantRejects: 6,
		},
		{
			name: "bearer with a wrong token", body: bodyB,
			headers:  func(string) map[string]string { return map[string]string{"Authorization": "Bearer nope"} },
			wantCode: http.StatusUnauthorized, wantErr: "wrong bearer token", wantStored: 1, wantRejects: 7,
		},
		{
			name: "bearer with the token, a single object", body: bodyB,
			headers:    func(string) map[string]string { return map[string]string{"Authorization": "bearer " + bearerToken} },
			wantCode:   http.StatusOK,
			wantLabels: []Label{{TokenHash: hash(leakedB), TokenType: "internal_scan", Label: "true_positive"}},
			wantStored: 2, wantRejects: 7,
		},
		{
			name: "signed report of an unknown secret", body: unknownBody,
			headers:    func(body string) map[string]string { return signed(t, body, b.priv, githubKeyID) },
			wantCode:   http.StatusOK,
			wantLabels: []Label{{TokenHash: hash(unseen), TokenType: "keywatch_api_key", Label: "false_positive"}},
			wantStored: 2, wantRejects: 7,
		},
		{
			name: "malformed body, signed", body: `[{"token": 42}]`,
			headers:  func(body string) map[string]string { return signed(t, body, b.priv, githubKeyID) },
			wantCode: http.StatusBadRequest, wantErr: "not a JSON array", wantStored: 2, wantRejects: 7,
		},
		{
			name: "report without a token", body: `[{"type":"x","url":"https://github.com/x"}]`,
			headers:  func(string) map[string]string { return map[string]string{"Authorization": "Bearer " + bearerToken} },
			wantCode: http.StatusBadRequest, wantErr: "report 0 has no token", wantStored: 2, wantRejects: 7,
		},
		{
			name: "empty array", body: `[]`,
			headers:  func(body string) map[string]string { return signed(t, body, b.priv, githubKeyID) },
			wantCode: http.StatusBadRequest, wantErr: "no reports", wantStored: 2, wantRejects: 7,
		},
	}
	for _, c := range cases {
		code, resp := b.post(c.body, c.headers(c.body))
		if code != c.wantCode {
			t.Fatalf("%s: status %d %s, want %d", c.name, code, resp, c.wantCode)
		}
		if c.wantErr != "" && !strings.Contains(resp, c.wantErr) {
			t.Errorf("%s: answer %s, want it to say %q", c.name, resp, c.wantErr)
		}
		if c.wantLabels != nil {
			var got []Label
			if err := json.Unmarshal([]byte(resp), &got); err != nil {
				t.Fatalf("%s: answer %s: %v", c.name, resp, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.wantLabels) {
				t.Errorf("%s: labels %+v, want %+v", c.name, got, c.wantLabels)
			}
		}
		if n := b.findings(); n != c.wantStored {
			t.Errorf("%s: %d leak_report findings stored, want %d", c.name, n, c.wantStored)
		}
		if n := b.rejected.count(); n != c.wantRejects {
			t.Errorf("%s: %d rejections audited, want %d", c.name, n, c.wantRejects)
		}
	}
	if n := b.runs(); n != 2 {
		t.Errorf("%d leak_report runs stored, want 2 (one per distinct report of a known key)", n)
	}
	for result, want := range map[string]float64{"matched": 3, "unknown": 1, "rejected": 7} {
		if got := b.counter("keywatch_leak_reports_total", "result", result); got != want {
			t.Errorf("keywatch_leak_reports_total{result=%q} = %v, want %v", result, got, want)
		}
	}

	// The findings: critical, for the key's latest client, with the report as evidence.
	rows, err := b.conn.Query(context.Background(), `SELECT severity, score, key_id, client_id, fingerprint, summary, evidence, fields
		FROM findings WHERE detector = 'leak_report' ORDER BY key_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type stored struct {
		severity, keyID, clientID, fingerprint, summary string
		score                                           float64
		ev                                              Evidence
		fields                                          []finding.Field
	}
	var got []stored
	for rows.Next() {
		var s stored
		var evidence, fields string
		if err := rows.Scan(&s.severity, &s.score, &s.keyID, &s.clientID, &s.fingerprint, &s.summary, &evidence, &fields); err != nil {
			t.Fatal(err)
		}
		if s.fields, err = finding.ParseFields(fields); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(evidence), &s.ev); err != nil {
			t.Fatalf("evidence %s: %v", evidence, err)
		}
		got = append(got, s)
	}
	if len(got) != 2 {
		t.Fatalf("%d findings, want 2", len(got))
	}
	a, bb := got[0], got[1]
	if a.severity != "critical" || a.score != Score || a.keyID != "kid_live_a" || a.clientID != "acme-billing" ||
		a.fingerprint != finding.Fingerprint("leak_report", "kid_live_a", "acme-billing", "") ||
		a.summary != "key kid_live_a reported leaked at https://github.com/octo/leaky/blob/main/.env" {
		t.Errorf("finding of key A: %+v", a)
	}
	if a.ev.URL != "https://github.com/octo/leaky/blob/main/.env" || a.ev.Source != "content" || a.ev.Type != "keywatch_api_key" ||
		a.ev.Reporter != "github" || !a.ev.ReportedAt.Equal(b.now) || !strings.HasPrefix(a.ev.KeyFingerprint, "fp_") {
		t.Errorf("evidence of key A: %+v", a.ev)
	}
	if bb.keyID != "kid_live_b" || bb.clientID != "globex" || bb.ev.Reporter != "bearer" || bb.ev.URL != "https://wiki.example.com/page/42" {
		t.Errorf("finding of key B: %+v", bb)
	}
	// The display fields say the evidence in words.
	stamp := b.now.UTC().Format("2006-01-02 15:04 UTC")
	wantA := []finding.Field{{Name: "URL", Value: a.ev.URL}, {Name: "Source", Value: "content"}, {Name: "Type", Value: "keywatch_api_key"},
		{Name: "Reporter", Value: "github"}, {Name: "Reported at", Value: stamp}, {Name: "Key fingerprint", Value: a.ev.KeyFingerprint},
		{Name: "Key last seen", Value: a.ev.KeyLastSeen.UTC().Format("2006-01-02 15:04 UTC")}}
	if !slices.Equal(a.fields, wantA) {
		t.Errorf("fields of key A\n got %q\nwant %q", a.fields, wantA)
	}
	if len(bb.fields) == 0 || bb.fields[0] != (finding.Field{Name: "URL", Value: "https://wiki.example.com/page/42"}) {
		t.Errorf("fields of key B: %q", bb.fields)
	}

	// The raw secrets reached neither storage nor the log.
	var everything string
	if err := b.conn.QueryRow(context.Background(), `SELECT concat(
		(SELECT groupConcat(concat(run_id, detector, fingerprint, key_id, client_id, rotation_id, summary, evidence)) FROM findings),
		(SELECT groupConcat(concat(run_id, error)) FROM detector_runs),
		(SELECT groupConcat(key_fingerprint) FROM auth_events))`).Scan(&everything); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{leakedA, leakedB, unseen} {
		if strings.Contains(everything, secret) {
			t.Errorf("a raw secret is stored: %s", everything)
		}
		if strings.Contains(b.logs.String(), secret) {
			t.Errorf("a raw secret is logged:\n%s", b.logs.String())
		}
	}
}

// A report naming two secrets of one key, one unknown secret and one of another key, all at once:
// one finding per key, the answers in the report's order.
func TestMixedReport(t *testing.T) {
	b := newBed(t, config.LeakReports{})
	body := `[
	 {"token":"` + leakedA + `","type":"t","url":"https://github.com/o/r/blob/1/a","source":"commit"},
	 {"token":"` + unseen + `","type":"t","url":"https://github.com/o/r/blob/1/b","source":"commit"},
	 {"token":"` + leakedA + `","type":"t","url":"https://github.com/o/r/blob/1/c","source":"commit"},
	 {"token":"` + leakedB + `","type":"t","url":"","source":"npm"}]`
	code, resp := b.post(body, signed(t, body, b.priv, githubKeyID))
	if code != http.StatusOK {
		t.Fatalf("status %d %s", code, resp)
	}
	var labels []Label
	if err := json.Unmarshal([]byte(resp), &labels); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range labels {
		got = append(got, l.Label)
	}
	if want := "true_positive false_positive true_positive true_positive"; strings.Join(got, " ") != want {
		t.Fatalf("labels %v, want %s", got, want)
	}
	if n := b.findings(); n != 2 {
		t.Fatalf("%d findings, want one per key", n)
	}
	var evidence, summary string
	if err := b.conn.QueryRow(context.Background(), "SELECT evidence FROM findings WHERE key_id = 'kid_live_a'").Scan(&evidence); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(evidence, `"other_urls":["https://github.com/o/r/blob/1/c"]`) {
		t.Errorf("evidence of key A %s: want the second URL", evidence)
	}
	var fields string
	if err := b.conn.QueryRow(context.Background(), "SELECT fields FROM findings WHERE key_id = 'kid_live_a'").Scan(&fields); err != nil {
		t.Fatal(err)
	}
	if fs, err := finding.ParseFields(fields); err != nil || !slices.Contains(fs, finding.Field{Name: "Other URLs", Value: "https://github.com/o/r/blob/1/c"}) {
		t.Errorf("fields of key A %s (%v): want the second URL among them", fields, err)
	}
	if err := b.conn.QueryRow(context.Background(), "SELECT summary FROM findings WHERE key_id = 'kid_live_b'").Scan(&summary); err != nil {
		t.Fatal(err)
	}
	if summary != "key kid_live_b reported leaked (source npm, no URL given)" {
		t.Errorf("summary of key B: %q", summary)
	}
	// The bearer form is off: no token configured.
	code, resp = b.post(body, map[string]string{"Authorization": "Bearer anything"})
	if code != http.StatusUnauthorized || !strings.Contains(resp, "no bearer token configured") {
		t.Errorf("bearer without a configured token: %d %s", code, resp)
	}
}

func TestOffAndLimits(t *testing.T) {
	ctx := context.Background()
	db := ch.NewDatabase(t)
	conn := ch.Conn(t, db)
	rec := &recorder{}
	h, err := New(conn, config.LeakReports{}, fingerprintKey, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/leaks", strings.NewReader(`[]`)))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "leak reports are off") {
		t.Errorf("no keys, no token: %d %s, want 403", w.Code, w.Body.String())
	}

	h, err = New(conn, config.LeakReports{Token: bearerToken}, fingerprintKey, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/leaks", bytes.NewReader(bytes.Repeat([]byte(" "), MaxBody+1)))
	req.Header.Set("Authorization", "Bearer "+bearerToken)
	h.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over 1 MiB: %d %s, want 413", w.Code, w.Body.String())
	}
}

func TestNewKeyErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name string
		cfg  config.LeakReports
		want string
	}{
		{"missing file", config.LeakReports{GitHubKeys: []string{missing}, GitHubKeyIDs: []string{"k1"}}, missing},
		{"not PEM", config.LeakReports{GitHubKeys: []string{notPEM}, GitHubKeyIDs: []string{"k1"}}, notPEM + ": holds no PEM block"},
		{"ed25519", config.LeakReports{GitHubKeys: []string{writePublicKey(t, edPub)}, GitHubKeyIDs: []string{"k1"}}, "want an ECDSA P-256 public key"},
		{"P-384", config.LeakReports{GitHubKeys: []string{writePublicKey(t, &p384.PublicKey)}, GitHubKeyIDs: []string{"k1"}}, "want an ECDSA P-256 public key"},
		{"ids and files differ", config.LeakReports{GitHubKeys: []string{notPEM}}, "0 key ids"},
		{"empty id", config.LeakReports{GitHubKeys: []string{notPEM}, GitHubKeyIDs: []string{" "}}, "is empty"},
	}
	for _, c := range cases {
		_, err := New(nil, c.cfg, fingerprintKey, nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to say %q", c.name, err, c.want)
		}
	}
}

// Keys whose traffic was stored before migration 0011 are matched too: the migration fills
// key_fingerprints from auth_events. Here its last statement runs again over an emptied table.
func TestBackfill(t *testing.T) {
	b := newBed(t, config.LeakReports{})
	ctx := context.Background()
	if err := b.conn.Exec(ctx, "TRUNCATE TABLE key_fingerprints"); err != nil {
		t.Fatal(err)
	}
	migrations, err := schema.Migrations(schema.RetentionFrom(config.Default().Retention))
	if err != nil {
		t.Fatal(err)
	}
	m := migrations[10]
	if m.Version != 11 || !strings.HasPrefix(m.Statements[len(m.Statements)-1], "INSERT INTO key_fingerprints") {
		t.Fatalf("migration %d %s: want 0011 ending with the backfill", m.Version, m.Name)
	}
	backfill := m.Statements[len(m.Statements)-1]
	for range 2 { // twice: a repeated backfill changes no answer
		if err := b.conn.Exec(ctx, backfill); err != nil {
			t.Fatal(err)
		}
	}
	body := githubBody(leakedA, "https://github.com/o/r")
	code, resp := b.post(body, signed(t, body, b.priv, githubKeyID))
	if code != http.StatusOK || !strings.Contains(resp, "true_positive") {
		t.Fatalf("report after the backfill: %d %s", code, resp)
	}
	var client string
	if err := b.conn.QueryRow(ctx, "SELECT client_id FROM findings WHERE detector = 'leak_report'").Scan(&client); err != nil {
		t.Fatal(err)
	}
	if client != "acme-billing" {
		t.Errorf("client %q, want the key's latest client acme-billing", client)
	}
}
