package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/chromedp/chromedp"

	"github.com/keywatch/keywatch/internal/testbed"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console's screenshots into docs/console/")

const (
	consoleAdminToken = "console-admin-token-0123456789abcdef"
	consoleWriteToken = "console-write-token-0123456789abcdef"
	consoleReadToken  = "console-read-token-0123456789abcdefgh"
	consoleLeakToken  = "console-leak-token-0123456789abcdefg"
	consoleSessionKey = "console-session-key-0123456789abcdef"
	consoleWebhookKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	// proxyAddr is the authenticating proxy's address (console.trusted_proxies): the test's
	// proxy-identity requests leave from it, every other request from 127.0.0.1.
	proxyAddr = "127.0.0.2"
)

// TestConsoleInABrowser drives the web console in a real headless Chromium against the whole
// daemon: sign in with a token, see a firing leak alert from a report, silence it and see it
// muted, approve its pending revoke and see exactly one signed webhook at the receiver. A
// request without a session, with a wrong CSRF token, or from a non-approver (a write-token
// session, or a proxy identity not in console.approvers) is refused; the refusals of signed-in
// people are in the action audit, the others counted in keywatch_http_refused_total. It takes
// a screenshot of every page (go test -run TestConsoleInABrowser ./cmd/keywatch/ -update-screenshots
// writes them into docs/console/).
func TestConsoleInABrowser(t *testing.T) {
	receiver := newWebhookReceiver(t, consoleWebhookKey, false)
	db, kafka, httpAddr, cfgPath := runSetup(t, 1, fmt.Sprintf(`
detect:
  leak: {schedule: ""}
  spike: {schedule: ""}
  hygiene: {schedule: ""}
  lingering:
    schedule: "@every 2s"
alerting:
  evaluate_interval: 1s
  group_wait: 0s
  group_interval: 1s
  for: {default: 0s}
revoke:
  webhook_url: %q
  retry_for: 1m
  policies: [{detector: "leak*", mode: approve}]
console:
  trusted_proxies: [%q]
  approvers: [alice@example.com]
`, receiver.URL, proxyAddr))
	for k, v := range map[string]string{
		"KEYWATCH_HTTP_TOKEN": consoleAdminToken, "KEYWATCH_HTTP_WRITE_TOKEN": consoleWriteToken, "KEYWATCH_HTTP_READ_TOKEN": consoleReadToken,
		"KEYWATCH_LEAK_REPORTS_TOKEN": consoleLeakToken, "KEYWATCH_CONSOLE_SESSION_KEY": consoleSessionKey,
		"KEYWATCH_REVOKE_WEBHOOK_SECRET": consoleWebhookKey,
	} {
		t.Setenv(k, v)
	}
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()
	kw.waitReady(t, httpAddr)
	base := "http://" + httpAddr
	conn := ch.Conn(t, db)

	// Scenario data: a rotation of acme's key in flight for 30 hours, acme moved to the new key
	// half-way, a batch job still on the old key every hour; a leaked key reported.
	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	start := fmt.Sprintf(`{"ts":%q,"type":"key.rotation_started","key_id":"kid_acme_2025","client_id":"acme","new_key_id":"kid_acme_2026","grace_until":%q}`, ts(-30*time.Hour), ts(6*time.Hour))
	if code, body := request(t, "POST", base+"/v1/lifecycle", consoleWriteToken, start); code != 200 {
		t.Fatalf("POST rotation_started: %d %s", code, body)
	}
	event := func(d time.Duration, key, client, ip, ua string) []byte {
		return fmt.Appendf(nil, `{"ts":%q,"key_id":%q,"client_id":%q,"ip":%q,"user_agent":%q,"status":200}`, ts(d), key, client, ip, ua)
	}
	var traffic [][]byte
	for m := 30 * 60; m > 0; m -= 20 {
		key := "kid_acme_2025"
		if m < 15*60 {
			key = "kid_acme_2026"
		}
		traffic = append(traffic, event(-time.Duration(m)*time.Minute, key, "acme-web", "203.0.113.5", "acme-sdk/2.1"))
	}
	for h := 30; h >= 0; h-- {
		traffic = append(traffic, event(-time.Duration(h)*time.Hour-17*time.Minute, "kid_acme_2025", "acme-nightly", "198.51.100.77", "nightly-export/0.9"))
	}
	const leaked = "sk_live_console0123456789leakedABCDEF"
	for i := range 20 {
		traffic = append(traffic, fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_live_leaky","api_key":%q,"client_id":"initech-billing","ip":"203.0.113.9","status":200}`,
			ts(-time.Duration(i)*time.Minute), leaked))
	}
	if err := kafka.Produce(context.Background(), "auth-events", traffic...); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the scenario's traffic stored", func() bool {
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM auth_events").Scan(&n)
		return n == uint64(len(traffic))
	})
	waitUntil(t, "the leaked key's fingerprint stored", func() bool { // ingest writes it after the events
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM key_fingerprints").Scan(&n)
		return n > 0
	})
	report := fmt.Sprintf(`{"token":%q,"type":"keywatch_api_key","url":"https://github.com/octo/leaky/blob/main/.env","source":"content"}`, leaked)
	if code, body := request(t, "POST", base+"/v1/leaks", consoleLeakToken, report); code != 200 {
		t.Fatalf("leak report: %d %s", code, body)
	}
	deadline := time.Now().Add(time.Minute)
	for queryString(t, conn, "SELECT toString(count()) FROM actions FINAL WHERE key_id = 'kid_live_leaky' AND state = 'awaiting_approval'") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("no revoke of the leaked key awaits approval; alerts:\n%s\nactions:\n%s\nlog:\n%s",
				queryString(t, conn, "SELECT groupConcat(concat(detector, ' ', key_id, ' ', toString(state), ' ', action, '\n')) FROM alerts FINAL"),
				queryString(t, conn, "SELECT groupConcat(concat(id, ' ', toString(state), ' ', detail, '\n')) FROM actions FINAL"), tail(kw.output(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}

	shots := filepath.Join(t.TempDir(), "screenshots")
	if *updateScreenshots {
		shots = filepath.Join("..", "..", "docs", "console")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// Without a session every page sends the browser to sign in.
	dana := newTab(t)
	dana.open(t, base+"/console/actions")
	dana.waitFor(t, "Sign in to keywatch")
	if !strings.Contains(dana.location(t), "/console/login?next=%2Fconsole%2Factions") {
		t.Fatalf("a page without a session went to %s, want the sign-in page", dana.location(t))
	}
	dana.screenshot(t, shots, "login")
	dana.signIn(t, "Dana", consoleAdminToken)
	dana.waitFor(t, "Awaiting approval", "Approve revoke") // back on the page asked for
	dana.screenshot(t, shots, "actions-pending")

	// The firing leak alert, grouped under its key, and its page.
	dana.open(t, base+"/console/")
	dana.waitFor(t, "leak")
	text := dana.waitFor(t, "kid_live_leaky")
	if !strings.Contains(text, "firing") {
		t.Fatalf("the alerts page does not show the leak alert firing:\n%s", text)
	}
	waitUntil(t, "the rotation's lingering alert", func() bool {
		dana.open(t, base+"/console/?state=all")
		return strings.Contains(dana.text(t), "kid_acme_2025")
	})
	dana.screenshot(t, shots, "alerts")
	dana.clickXPath(t, `//tr[td/a[text()="kid_live_leaky"]]//a[starts-with(@href, "/console/alerts/")]`)
	dana.waitFor(t, "Evidence", "History")
	dana.screenshot(t, shots, "alert")

	// Silence the leak alert from its page; the alerts page then shows it muted.
	dana.click(t, `a.button[href^="/console/silences?"]`)
	dana.waitFor(t, "New silence")
	if v := dana.value(t, "#matchers"); !strings.Contains(v, "key_id=kid_live_leaky") {
		t.Fatalf("the silence form is not prefilled from the alert: %q", v)
	}
	dana.fill(t, "#comment", "rotating the leaked key with initech; revoke decided in the console")
	dana.submit(t, "#comment")
	dana.waitFor(t, "Silence sil-", "1 open alert")
	dana.screenshot(t, shots, "silences")
	waitUntil(t, "the leak alert muted", func() bool {
		dana.open(t, base+"/console/?key=kid_live_leaky")
		return strings.Contains(dana.text(t), "muted")
	})

	// A write-token session may look at the pending revoke, not approve it.
	eve := newTab(t)
	eve.open(t, base+"/console/login")
	eve.signIn(t, "Eve", consoleWriteToken)
	eve.open(t, base+"/console/actions")
	eve.click(t, `button[aria-label="Approve the revoke of kid_live_leaky"]`)
	eve.waitFor(t, "Refused: only approvers may approve actions")

	// A form whose CSRF token is not the session's is refused.
	dana.open(t, base+"/console/actions")
	dana.setValue(t, `form[action$="/approve"] input[name="csrf"]`, "forged-csrf-token-0123456789")
	dana.click(t, `button[aria-label="Approve the revoke of kid_live_leaky"]`)
	dana.waitFor(t, "Refused: the form's CSRF token does not belong to your session")

	// The approval, as a Slack click would: one signed revoke at the receiver.
	dana.open(t, base+"/console/actions")
	dana.click(t, `button[aria-label="Approve the revoke of kid_live_leaky"]`)
	dana.waitFor(t, "Revoke of kid_live_leaky approved by Dana")
	waitUntil(t, "one revoke at the receiver", func() bool { return receiver.count() >= 1 })
	waitUntil(t, "the revoke sent in the audit", func() bool {
		dana.open(t, base+"/console/actions?key=kid_live_leaky")
		return strings.Contains(dana.text(t), "sent")
	})
	dana.screenshot(t, shots, "actions")

	// Requests without a session, and proxy identities.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	actionID := queryString(t, conn, "SELECT id FROM actions FINAL WHERE key_id = 'kid_live_leaky'")
	if code, _ := consoleRequest(t, client, "POST", base+"/console/actions/"+actionID+"/approve", "", "csrf=x", nil); code != http.StatusUnauthorized {
		t.Fatalf("an approval without a session: %d, want 401", code)
	}
	if code, loc := consoleRequest(t, client, "GET", base+"/console/", "", "", map[string]string{"X-Forwarded-Email": "alice@example.com"}); code != http.StatusSeeOther || !strings.Contains(loc, "/console/login") {
		t.Fatalf("a proxy identity header from an untrusted address: %d %s, want a redirect to sign in", code, loc)
	}
	proxy := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(proxyAddr)}}).DialContext},
		CheckRedirect: client.CheckRedirect}
	bob := map[string]string{"X-Forwarded-Email": "bob@example.com"}
	code, page := consoleRequest(t, proxy, "GET", base+"/console/silences", "", "", bob)
	if code != 200 || !strings.Contains(page, "bob@example.com") {
		t.Fatalf("the silences page to the proxy's bob: %d\n%s", code, page)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("no CSRF token on the proxy's page:\n%s", page)
	}
	if code, _ := consoleRequest(t, proxy, "POST", base+"/console/actions/"+actionID+"/refuse", "", "csrf="+url.QueryEscape(csrf[1])+"&reason=nope", bob); code != http.StatusForbidden {
		t.Fatalf("a refusal by bob, no approver: %d, want 403", code)
	}

	// Everything refused is on record: signed-in people in the audit, the rest in the metric.
	audit := queryString(t, conn, "SELECT groupConcat(concat(actor, ' ', event, ' ', detail, '\n')) FROM action_audit")
	for _, want := range []string{
		"console rejected not_an_approver: console user Eve/write-token (session): POST /console/actions/" + actionID + "/approve",
		"console rejected csrf_token_mismatch: console user Dana/admin-token (session)",
		"console rejected not_an_approver: console user bob@example.com (proxy): POST /console/actions/" + actionID + "/refuse",
		"console:Dana/admin-token approved",
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("the action audit has no %q:\n%s", want, audit)
		}
	}
	_, metrics := request(t, "GET", base+"/metrics", "", "")
	if !regexp.MustCompile(`keywatch_http_refused_total\{reason="no session",source="console"\} [2-9]`).MatchString(metrics) {
		t.Errorf("refusals without a session are not counted:\n%s", grepLines(metrics, "refused_total"))
	}

	// The rotation, its burn-down and stragglers, and a key.
	dana.open(t, base+"/console/rotations")
	dana.waitFor(t, "kid_acme_2025 → kid_acme_2026")
	dana.screenshot(t, shots, "rotations")
	dana.click(t, `a[href^="/console/rotation?id="]`)
	text = dana.waitFor(t, "Share of requests on the new key", "acme-nightly", "nightly-export/0.9", "UNSAFE")
	if n := dana.count(t, "svg.burndown polyline"); n != 2 {
		t.Errorf("the burn-down draws %d lines, want 2 (acme-web, acme-nightly)\n%s", n, text)
	}
	dana.screenshot(t, shots, "rotation")
	dana.open(t, base+"/console/keys/kid_acme_2025")
	dana.waitFor(t, "Callers, last 30 days", "acme-nightly", "198.51.100.0/24")
	dana.screenshot(t, shots, "key")
	dana.phone(t)
	dana.open(t, base+"/console/")
	dana.waitFor(t, "kid_live_leaky")
	dana.screenshot(t, shots, "alerts-phone")

	// Every answer carries the security headers.
	resp, err := client.Get(base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	time.Sleep(3 * time.Second) // evaluation passes after the approval: nothing more is sent
	if ids := receiver.ids(); len(ids) != 1 {
		t.Fatalf("revoke webhooks with ids %v, want exactly one", ids)
	}
}

// tab is one person's browser: a headless Chromium of its own, so that each person has their own
// cookies.
type tab struct {
	ctx context.Context
}

func newTab(t *testing.T) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(testbed.Chromium(t)), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
	for _, f := range testbed.ChromiumFlags {
		opts = append(opts, chromedp.Flag(strings.TrimPrefix(f, "--"), true))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return &tab{ctx: ctx}
}

// runIn runs one action that returns a value, failing t after 30 s or on an error.
func runIn[T any](t *testing.T, p *tab, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

func (p *tab) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	runIn(t, p, what, chromedp.Steps(steps...))
}

func (p *tab) open(t *testing.T, u string) {
	t.Helper()
	p.do(t, "open "+u, chromedp.Navigate(u))
}

func (p *tab) text(t *testing.T) string {
	t.Helper()
	return runIn(t, p, "read the page", chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
}

func (p *tab) location(t *testing.T) string {
	t.Helper()
	return runIn(t, p, "read the location", chromedp.Location())
}

// waitFor waits until the page shows every one of wants, and returns its text.
func (p *tab) waitFor(t *testing.T, wants ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.text(t)
		missing := ""
		for _, w := range wants {
			if !strings.Contains(s, w) {
				missing = w
			}
		}
		if missing == "" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page at %s does not show %q:\n%s", p.location(t), missing, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// click clicks the first element the CSS selector sel selects.
func (p *tab) click(t *testing.T, sel string) {
	t.Helper()
	p.do(t, "click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// clickXPath clicks the first element the XPath selects.
func (p *tab) clickXPath(t *testing.T, xpath string) {
	t.Helper()
	p.do(t, "click "+xpath, chromedp.Click(chromedp.Search(xpath), chromedp.NodeVisible))
}

func (p *tab) fill(t *testing.T, sel, value string) {
	t.Helper()
	p.do(t, "fill "+sel, chromedp.SendKeys(chromedp.CSS(sel), value))
}

func (p *tab) setValue(t *testing.T, sel, value string) {
	t.Helper()
	p.do(t, "set "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

func (p *tab) value(t *testing.T, sel string) string {
	t.Helper()
	return runIn(t, p, "read "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// submit submits the form of the field sel.
func (p *tab) submit(t *testing.T, sel string) {
	t.Helper()
	p.do(t, "submit "+sel, chromedp.Submit(chromedp.CSS(sel)))
}

func (p *tab) count(t *testing.T, sel string) int {
	t.Helper()
	return runIn(t, p, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

func (p *tab) signIn(t *testing.T, name, token string) {
	t.Helper()
	p.waitFor(t, "Sign in to keywatch")
	p.fill(t, "#name", name)
	p.fill(t, "#token", token)
	p.submit(t, "#token")
	p.waitFor(t, name+" (", "Sign out") // signed in, on the page asked for
}

// phone makes the tab's viewport a phone's.
func (p *tab) phone(t *testing.T) {
	t.Helper()
	p.do(t, "emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
}

func (p *tab) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	png := runIn(t, p, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// consoleRequest sends a request outside the browser; it returns the status and the body, or the
// Location of a redirect.
func consoleRequest(t *testing.T, c *http.Client, method, u, cookie, form string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if loc := resp.Header.Get("Location"); loc != "" {
		return resp.StatusCode, loc
	}
	return resp.StatusCode, string(b)
}

func queryString(t *testing.T, conn driver.Conn, query string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
