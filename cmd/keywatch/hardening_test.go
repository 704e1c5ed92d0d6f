package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestRefusedRequestsCostNothingWithClickHouseDown sends 50 unauthenticated requests with
// ~30 KB paths and bodies (a missing or wrong token, a forged Slack signature, a wrong leak
// report token) while ClickHouse is unreachable: each is refused at once, none writes a row, and
// the log grows by a few short lines.
func TestRefusedRequestsCostNothingWithClickHouseDown(t *testing.T) {
	proxy := startCHProxy(t, nil, true)
	t.Setenv("KEYWATCH_HTTP_TOKEN", "hardening-token-0123456789abcdef0123")
	t.Setenv("KEYWATCH_SLACK_SIGNING_SECRET", "hardening-signing-0123456789abcdef")
	t.Setenv("KEYWATCH_LEAK_REPORTS_TOKEN", "hardening-leaks-0123456789abcdef0123")
	db, _, httpAddr, cfgPath := runSetup(t, 1, "")
	rewrite(t, cfgPath, ch.Addr(t), proxy.addr)
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()
	kw.waitReady(t, httpAddr)
	conn := ch.Conn(t, db)
	audited := func() uint64 {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM action_audit").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := audited()
	logBefore := len(kw.output())

	proxy.down()
	long := strings.Repeat("A", 30<<10)
	// The client's timeout only catches a request that hangs (a refusal waiting on ClickHouse
	// hung for a minute); the slowest refusal is logged, not asserted.
	client := &http.Client{Timeout: 30 * time.Second}
	var slowest time.Duration
	for i := range 50 {
		var req *http.Request
		switch i % 3 {
		case 0:
			req, _ = http.NewRequest("POST", "http://"+httpAddr+"/v1/keys/"+long[:20<<10]+"/revoke", strings.NewReader(long))
			if i%2 == 0 {
				req.Header.Set("Authorization", "Bearer "+long[:10<<10])
			}
		case 1:
			req, _ = http.NewRequest("POST", "http://"+httpAddr+"/slack/interactions", strings.NewReader("payload="+long))
			req.Header.Set("X-Slack-Request-Timestamp", fmt.Sprint(time.Now().Unix()))
			req.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("ab", 32))
		case 2:
			req, _ = http.NewRequest("POST", "http://"+httpAddr+"/v1/leaks", strings.NewReader(long))
			req.Header.Set("Authorization", "Bearer "+long[:10<<10])
		}
		start := time.Now()
		resp, err := client.Do(req)
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			t.Fatalf("request %d (%s) with ClickHouse down: %v", i, req.URL.Path[:min(len(req.URL.Path), 20)], ue.Err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowest = max(slowest, time.Since(start))
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("request %d (%s): %d, want 401 or 403", i, req.URL.Path[:min(len(req.URL.Path), 20)], resp.StatusCode)
		}
	}
	t.Logf("50 refusals with ClickHouse down; the slowest took %s", slowest.Round(time.Millisecond))
	grew := len(kw.output()) - logBefore
	proxy.up.Store(true)
	if after := audited(); after != before {
		t.Errorf("action_audit went from %d to %d rows: refusals must not be stored", before, after)
	}
	if grew > 16<<10 {
		t.Errorf("the log grew %d bytes for 50 refusals, want at most 16 KiB:\n%s", grew, kw.output()[logBefore:logBefore+4096])
	}
	if strings.Contains(kw.output()[logBefore:], long[:1024]) {
		t.Error("the log holds a request's path or token uncut")
	}
}

// TestSIGTERMWithASlowClientExitsZero stops the daemon while a client trickles a request body.
func TestSIGTERMWithASlowClientExitsZero(t *testing.T) {
	t.Setenv("KEYWATCH_HTTP_TOKEN", "hardening-token-0123456789abcdef0123")
	_, _, httpAddr, cfgPath := runSetup(t, 1, "")
	kw := startKeywatch(t, cfgPath)
	kw.waitReady(t, httpAddr)
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST /v1/lifecycle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hardening-token-0123456789abcdef0123\r\nContent-Length: 100000\r\n\r\n{")
	out, err := kw.stop()
	if err != nil {
		t.Fatalf("keywatch run with a slow client connected: %v, want exit 0\n%s", err, out)
	}
}
