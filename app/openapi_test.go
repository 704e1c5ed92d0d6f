package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/alerting"
	"github.com/keywatch/keywatch/finding"
	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
	"github.com/keywatch/keywatch/openapi"
)

var ch *testbed.SharedClickHouse

func TestMain(m *testing.M) { testbed.Main(m, &ch) }

const leakTok = "leak-token-0123456789abcdef0123456789"

// apiRig is the daemon's router as `keywatch run` wires it (d.build, d.routes) over a migrated
// test database, and the OpenAPI document.
type apiRig struct {
	t    *testing.T
	rt   routes
	h    http.Handler
	doc  *openapi3.T
	seen map[string]bool // "METHOD /path" of the operations whose responses were validated
}

func newAPIRig(t *testing.T) (*apiRig, *daemon) {
	t.Helper()
	_, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	d := &daemon{log: log, reg: reg, conn: conn, metrics: newMetrics(reg, log)}
	cfg := config.Default()
	cfg.HTTP.Token, cfg.HTTP.WriteToken, cfg.HTTP.ReadToken = adminTok, writeTok, readTok
	cfg.LeakReports.Token = leakTok
	cfg.Fingerprint.Key = "fingerprint-key-0123456789abcdef0123456789"
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"revoke"`) {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, "rollbacks are done by hand here", http.StatusBadRequest)
	}))
	t.Cleanup(receiver.Close)
	cfg.Revoke.WebhookURL, cfg.Revoke.WebhookSecret = receiver.URL, "whsec_"+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	gen, err := d.build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.gen = gen
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	rt := d.routes(gen)
	return &apiRig{t: t, rt: rt, h: rt.handler(), doc: doc, seen: map[string]bool{}}, d
}

// documented are the operations of the document, "METHOD /path".
func documented(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

// TestEveryV1RouteIsDescribed: the routes the router registers under /v1 (as the daemon wires
// them, every handler set) are exactly the operations openapi/openapi.json describes.
func TestEveryV1RouteIsDescribed(t *testing.T) {
	rig, _ := newAPIRig(t)
	var registered []string
	for _, r := range rig.rt.table() {
		if method, path, _ := strings.Cut(r.pattern, " "); strings.HasPrefix(path, "/v1/") {
			registered = append(registered, method+" "+path)
		} else if !strings.HasPrefix(path, "/-/") && !strings.HasPrefix(path, "/slack/") {
			t.Errorf("route %q: outside /v1/, /-/ and /slack/", r.pattern)
		}
	}
	sort.Strings(registered)
	if docd := documented(rig.doc); !slices.Equal(registered, docd) {
		t.Errorf("the router registers\n  %s\nthe document describes\n  %s", strings.Join(registered, "\n  "), strings.Join(docd, "\n  "))
	}
	if len(registered) < 13 {
		t.Errorf("only %d /v1 routes registered: the daemon left some handlers unset", len(registered))
	}
}

// do sends a request through the router and validates the response against the document: the
// operation of the route that answered, its status (which must be described), content type and
// body; and a request the server took (2xx), against the operation. It returns the status and body.
func (rig *apiRig) do(method, target, token, body string, header ...string) (int, string) {
	rig.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	rig.h.ServeHTTP(rec, req)
	res := rec.Result()
	got, _ := io.ReadAll(res.Body)
	_, path, _ := strings.Cut(req.Pattern, " ")
	item := rig.doc.Paths.Value(path)
	if item == nil || item.GetOperation(method) == nil {
		rig.t.Fatalf("%s %s answered by route %q, which the document does not describe", method, target, req.Pattern)
	}
	params := map[string]string{}
	if strings.Contains(path, "{id}") {
		params["id"] = req.PathValue("id")
	}
	input := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params,
		Route:   &routers.Route{Spec: rig.doc, Path: path, PathItem: item, Method: method, Operation: item.GetOperation(method)},
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if res.StatusCode < 300 {
		// A request the server took must be one the document allows.
		vreq := req.Clone(context.Background())
		vreq.Body = io.NopCloser(strings.NewReader(body))
		vin := *input
		vin.Request = vreq
		vin.Options = &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
		if err := openapi3filter.ValidateRequest(context.Background(), &vin); err != nil {
			rig.t.Errorf("%s %s: answered %d, but the document does not allow the request: %v", method, target, res.StatusCode, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: res.StatusCode, Header: res.Header, Options: input.Options}
	out.SetBodyBytes(got)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		rig.t.Errorf("%s %s: the %d response does not match the document: %v\nbody: %.300s", method, target, res.StatusCode, err, got)
	}
	rig.seen[method+" "+path] = true
	return res.StatusCode, string(got)
}

// expect does the request and fails unless it answers want.
func (rig *apiRig) expect(want int, method, target, token, body string, header ...string) string {
	rig.t.Helper()
	code, got := rig.do(method, target, token, body, header...)
	if code != want {
		rig.t.Errorf("%s %s: %d %.300s, want %d", method, target, code, got, want)
	}
	return got
}

// TestResponsesMatchTheDocument drives every /v1 route through the daemon's router against a
// real database holding a rotation, its traffic and alerts, and validates every answer (successes
// and errors) against openapi/openapi.json with openapi3filter.
func TestResponsesMatchTheDocument(t *testing.T) {
	rig, d := newAPIRig(t)
	now := time.Now().UTC().Truncate(time.Second)
	started := now.Add(-50 * time.Hour)
	lifecycle := func(ev string) string {
		return rig.expect(200, "POST", "/v1/lifecycle", writeTok, ev)
	}
	lifecycle(fmt.Sprintf(`{"ts": %q, "type": "key.created", "key_id": "kid_old", "client_id": "acme", "version": 2, "scopes": ["read"]}`,
		started.Add(-24*time.Hour).Format(time.RFC3339)))
	lifecycle(fmt.Sprintf(`{"ts": %d, "type": "key.rotation_started", "key_id": "kid_old", "client_id": "acme", "new_key_id": "kid_new", "grace_until": %q}`,
		started.UnixMilli(), now.Add(48*time.Hour).Format(time.RFC3339)))
	rig.expect(400, "POST", "/v1/lifecycle", writeTok, `{"type": "key.created"}`)
	rig.expect(403, "POST", "/v1/lifecycle", readTok, `{}`)
	rig.expect(413, "POST", "/v1/lifecycle", writeTok, `{"reason": "`+strings.Repeat("x", 70<<10)+`"}`)

	// Traffic: billing stays on the old key, web moves; an unidentified caller.
	b, err := d.conn.PrepareBatch(context.Background(), `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	add := func(ts time.Time, key, client, ip string, asn uint32, country string) {
		n++
		if err := b.Append(ts, key, "", client, "ok", uint16(200), netip.MustParseAddr(ip).As16(), asn, "", country,
			"sdk/1", "GET", "/v1/x", fmt.Sprint("r-", n), "edge", "auth-events", int32(0), n); err != nil {
			t.Fatal(err)
		}
	}
	for h := started.Add(-24 * time.Hour); h.Before(now); h = h.Add(time.Hour) {
		add(h, "kid_old", "billing", "198.51.100.10", 64500, "DE")
		if h.Before(started.Add(time.Hour)) {
			add(h, "kid_old", "web", "203.0.113.5", 64501, "US")
		} else {
			add(h, "kid_new", "web", "203.0.113.5", 64501, "US")
		}
	}
	add(started.Add(3*time.Hour), "kid_old", "", "2001:db8::1", 0, "")
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	// An alert firing about the old key.
	store := finding.NewStore(d.conn)
	f := finding.New("lingering", now, "kid_old", "billing", "kid_old>kid_new")
	f.Severity, f.Summary, f.Labels = finding.Warning, "billing still on kid_old", map[string]string{"step": "started"}
	if err := store.StoreRun(context.Background(), finding.Run{ID: "r1", Detector: "lingering", Started: now, Finished: now, Findings: []finding.Finding{f}}); err != nil {
		t.Fatal(err)
	}
	acfg := config.Default().Alerting
	acfg.For = map[string]config.Duration{"default": 0}
	if err := alerting.New(d.conn, acfg, config.Slack{}, nil, nil, nil, nil).Evaluate(context.Background(), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	// Reads.
	rig.expect(200, "GET", "/v1/keys/kid_old", readTok, "")
	rig.expect(200, "GET", "/v1/keys/kid_new", readTok, "")
	rig.expect(404, "GET", "/v1/keys/kid_unknown", readTok, "")
	rig.expect(400, "GET", "/v1/keys/kid_old?x=1", readTok, "")
	rig.expect(400, "GET", "/v1/keys/"+url.PathEscape("kid\u202e"), readTok, "")
	rig.expect(401, "GET", "/v1/keys/kid_old", "", "")
	rig.expect(401, "GET", "/v1/keys/kid_old", "wrong-token", "")
	rig.expect(200, "GET", "/v1/keys/kid_old/readiness", readTok, "")
	if got := rig.expect(200, "GET", "/v1/keys/kid_old/readiness", readTok, "", "Accept", "text/plain"); !strings.HasPrefix(got, "UNSAFE to retire kid_old") {
		t.Errorf("readiness as text: %.200s", got)
	}
	rig.expect(404, "GET", "/v1/keys/kid_unknown/readiness", readTok, "")
	rig.expect(200, "GET", "/v1/rotations", readTok, "")
	rig.expect(200, "GET", "/v1/rotations?limit=1", readTok, "")
	rig.expect(400, "GET", "/v1/rotations?limit=1000", readTok, "")
	rig.expect(200, "GET", "/v1/rotations/"+url.PathEscape("kid_old>kid_new"), readTok, "")
	rig.expect(404, "GET", "/v1/rotations/"+url.PathEscape("kid_old>kid_x"), readTok, "")
	rig.expect(400, "GET", "/v1/rotations/kid_old", readTok, "")
	rig.expect(200, "GET", "/v1/alerts", readTok, "")
	rig.expect(200, "GET", "/v1/alerts?state=firing&detector=lingering&key_id=kid_old&limit=1", readTok, "")
	rig.expect(400, "GET", "/v1/alerts?state=open", readTok, "")
	rig.expect(401, "GET", "/v1/alerts", "", "")
	rig.expect(200, "GET", "/v1/openapi.json", "", "")

	// Silences.
	rig.expect(200, "GET", "/v1/silences", readTok, "")
	created := rig.expect(201, "POST", "/v1/silences", writeTok, `{"matchers": {"key_id": "kid_old"}, "duration": "1h", "created_by": "ops", "comment": "rotating"}`)
	rig.expect(400, "POST", "/v1/silences", writeTok, `{"matchers": {}, "duration": "-1h"}`)
	rig.expect(403, "POST", "/v1/silences", readTok, `{}`)
	var sil struct{ ID string }
	if err := json.Unmarshal([]byte(created), &sil); err != nil || sil.ID == "" {
		t.Fatalf("created silence %s: %v", created, err)
	}
	rig.expect(200, "DELETE", "/v1/silences/"+sil.ID+"?expired_by=ops", writeTok, "")
	rig.expect(404, "DELETE", "/v1/silences/sil-nothing", writeTok, "")

	// Revokes and rollbacks, delivered by the leader's loop to the receiver.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.gen.revoker.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	rig.expect(200, "POST", "/v1/keys/kid_new/revoke", adminTok, `{"reason": "leaked", "actor": "ops"}`)
	rig.expect(502, "POST", "/v1/keys/kid_old/rollback", adminTok, `{"reason": "billing not moved", "extend": "24h"}`) // the receiver refuses rollbacks
	rig.expect(400, "POST", "/v1/keys/kid_old/revoke", adminTok, `{"actor": "ops"}`)
	rig.expect(400, "POST", "/v1/keys/kid_old/revoke", adminTok, `not json`)
	rig.expect(404, "POST", "/v1/keys/kid_unknown/revoke", adminTok, `{"reason": "leaked"}`)
	rig.expect(403, "POST", "/v1/keys/kid_old/revoke", writeTok, `{"reason": "leaked"}`)
	rig.expect(400, "POST", "/v1/keys/kid_old/rollback", adminTok, `{"action": "undo"}`)
	rig.expect(404, "POST", "/v1/keys/kid_unknown/rollback", adminTok, `{"reason": "too early"}`)
	rig.expect(401, "POST", "/v1/keys/kid_old/rollback", "", `{}`)

	// Leak reports: the bearer-token form.
	rig.expect(200, "POST", "/v1/leaks", leakTok, `[{"token": "sk_live_nothing_we_know", "type": "keywatch_key", "url": "https://example.com/x"}]`)
	rig.expect(401, "POST", "/v1/leaks", "", `[]`)
	rig.expect(401, "POST", "/v1/leaks", "", `[]`, "Github-Public-Key-Identifier", "nope", "Github-Public-Key-Signature", "AAAA")
	rig.expect(400, "POST", "/v1/leaks", leakTok, ``)

	for _, op := range documented(rig.doc) {
		if !rig.seen[op] {
			t.Errorf("%s: no response of it was validated", op)
		}
	}
}
