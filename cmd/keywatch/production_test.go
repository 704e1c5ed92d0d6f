package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/broker"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/testbed"
)

// chProxy stands between keywatch and the embedded ClickHouse's native port. While down it
// closes every connection it accepts; with a TLS config it terminates TLS, as a ClickHouse Cloud
// endpoint on 9440 does (the embedded server cannot listen with TLS itself).
type chProxy struct {
	ln       net.Listener
	up       atomic.Bool
	wg       sync.WaitGroup
	addr     string
	upstream string // the test server's native address

	mu    sync.Mutex
	conns map[net.Conn]bool // open client connections, closed by down
}

// down makes ClickHouse unreachable: new connections are refused and open ones cut.
func (p *chProxy) down() {
	p.up.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func startCHProxy(t *testing.T, tlsCfg *tls.Config, up bool) *chProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chProxy{ln: ln, addr: ln.Addr().String(), upstream: ch.Addr(t), conns: map[net.Conn]bool{}}
	if tlsCfg != nil {
		p.ln = tls.NewListener(ln, tlsCfg)
	}
	p.up.Store(up)
	go p.serve()
	t.Cleanup(func() { p.ln.Close(); p.wg.Wait() })
	return p
}

func (p *chProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		p.mu.Lock()
		p.conns[c] = true
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
				c.Close()
			}()
			if tc, ok := c.(*tls.Conn); ok {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					return // a client that does not trust the certificate: nothing reaches ClickHouse
				}
			}
			s, err := net.Dial("tcp", p.upstream)
			if err != nil {
				return
			}
			defer s.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(c, s); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// TestRunServesHealthBeforeClickHouse: with ClickHouse down, `keywatch run` answers /healthz at
// once and /readyz 503 naming ClickHouse; when ClickHouse comes up it gets ready without a restart.
func TestRunServesHealthBeforeClickHouse(t *testing.T) {
	const token = "ready-token-0123456789abcdef0123456"
	t.Setenv("KEYWATCH_HTTP_TOKEN", token)
	proxy := startCHProxy(t, nil, false)
	db, kafka, httpAddr, cfgPath := runSetup(t, 1, "")
	rewrite(t, cfgPath, ch.Addr(t), proxy.addr)
	started := time.Now()
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()

	var healthyAfter time.Duration
	waitUntil(t, "/healthz answers while ClickHouse is down", func() bool {
		code, _ := get(t, "http://"+httpAddr+"/healthz")
		healthyAfter = time.Since(started)
		return code == 200
	})
	t.Logf("/healthz answered 200 %s after the process started, ClickHouse down", healthyAfter.Round(time.Millisecond))
	// The checks' errors name internal addresses: on the public listener, only to a token.
	if code, body := get(t, "http://"+httpAddr+"/readyz"); code != 503 || !strings.Contains(body, `"clickhouse":"not ready"`) {
		t.Fatalf("/readyz without a token, ClickHouse down: %d %s, want 503 without the error", code, body)
	}
	code, body := getWith(t, "http://"+httpAddr+"/readyz", token)
	if code != 503 || !strings.Contains(body, `"clickhouse":"unreachable`) || !strings.Contains(body, `"schema":"waiting for clickhouse"`) {
		t.Fatalf("/readyz with ClickHouse down: %d %s, want 503 naming clickhouse", code, body)
	}
	if code, body := get(t, "http://"+httpAddr+"/-/ready"); code != 503 {
		t.Fatalf("/-/ready with ClickHouse down: %d %s", code, body)
	}
	if code, body := get(t, "http://"+httpAddr+"/v1/keys/k/readiness"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/v1 before the daemon is wired: %d %s, want 503", code, body)
	}

	proxy.up.Store(true)
	kw.waitReady(t, httpAddr)
	if err := kafka.Produce(context.Background(), "auth-events", fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_1","status":200}`, time.Now().UnixMilli())); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	waitUntil(t, "the event stored", func() bool {
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM auth_events").Scan(&n)
		return n == 1
	})
}

// TestRunThroughTLSClickHouse runs keywatch against ClickHouse behind a TLS endpoint: it migrates,
// ingests and detects through it, and refuses a certificate from a CA it was not given.
func TestRunThroughTLSClickHouse(t *testing.T) {
	dir := t.TempDir()
	ca, err := testbed.NewCA(dir, "clickhouse")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server("clickhouse-server", "clickhouse.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCHProxy(t, &tls.Config{Certificates: []tls.Certificate{server.TLS}}, true)

	db, kafka, httpAddr, cfgPath := runSetup(t, 1, fmt.Sprintf(`
detect:
  lingering:
    schedule: "@every 1s"
    quiet_for: 1s
`))
	rewrite(t, cfgPath, ch.Addr(t), proxy.addr)
	appendYAML(t, cfgPath, fmt.Sprintf("  secure: true\n  tls:\n    ca_file: %q\n    server_name: clickhouse.test\n", ca.CertFile), "clickhouse:")
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()
	kw.waitReady(t, httpAddr)

	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	if err := kafka.Produce(context.Background(), "key-lifecycle",
		fmt.Appendf(nil, `{"ts":%q,"type":"key.rotation_started","key_id":"kid_old","client_id":"acme","new_key_id":"kid_new","grace_until":%q}`, ts(-2*time.Hour), ts(30*time.Minute))); err != nil {
		t.Fatal(err)
	}
	var events [][]byte
	for m := range 20 {
		events = append(events, fmt.Appendf(nil, `{"ts":%q,"key_id":"kid_old","client_id":"acme","ip":"198.51.100.7","status":200}`, ts(-time.Duration(20-m)*time.Minute)))
	}
	if err := kafka.Produce(context.Background(), "auth-events", events...); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	waitUntil(t, "20 events stored and a lingering finding detected through TLS", func() bool {
		var n, f uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM auth_events").Scan(&n)
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM findings WHERE detector = 'lingering' AND key_id = 'kid_old'").Scan(&f)
		return n == 20 && f > 0
	})

	// The same endpoint with another CA's certificate is refused, at start and on /readyz.
	other, err := testbed.NewCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	_, _, httpAddr2, cfgPath2 := runSetup(t, 1, "")
	rewrite(t, cfgPath2, ch.Addr(t), proxy.addr)
	appendYAML(t, cfgPath2, fmt.Sprintf("  secure: true\n  tls:\n    ca_file: %q\n    server_name: clickhouse.test\n", other.CertFile), "clickhouse:")
	adminAddr := freeAddr(t)
	appendYAML(t, cfgPath2, fmt.Sprintf("  admin_listen: %q\n", adminAddr), "http:")
	kw2 := startKeywatch(t, cfgPath2)
	defer kw2.stop()
	waitUntil(t, "/readyz on the admin listener names the refused certificate", func() bool {
		_, body := get(t, "http://"+adminAddr+"/readyz")
		return strings.Contains(body, "TLS handshake failed (clickhouse.secure, clickhouse.tls.*)") && strings.Contains(body, "x509")
	})
	if code, body := get(t, "http://"+httpAddr2+"/readyz"); code == http.StatusOK || strings.Contains(body, "x509") {
		t.Errorf("/readyz on the public listener with an admin listener: %d %s, want no readiness there", code, body)
	}
	waitUntil(t, "the log names the refused certificate", func() bool {
		return strings.Contains(kw2.output(), "certificate signed by unknown authority")
	})
}

// TestReloadAppliesTheFileOrKeepsTheRunningConfiguration changes a detector threshold and a
// route in the file and sends SIGHUP; then a broken file and a restart-only change are refused.
// The listener serves HTTPS, and a renewed certificate is served after the reload.
func TestReloadAppliesTheFileOrKeepsTheRunningConfiguration(t *testing.T) {
	dir := t.TempDir()
	ca, err := testbed.NewCA(dir, "listener")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("keywatch", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	const token = "reload-token-0123456789abcdef0123456"
	t.Setenv("KEYWATCH_HTTP_TOKEN", token)
	base := func(minZ float64, channel string) string {
		return fmt.Sprintf(`
  tls:
    cert_file: %q
    key_file: %q
detect:
  spike:
    min_z: %g
slack:
  routes:
    - channel: %q
      severity: [critical]
`, cert.CertFile, cert.KeyFile, minZ, channel)
	}
	_, _, httpAddr, cfgPath := runSetup(t, 1, "")
	original, _ := os.ReadFile(cfgPath)
	write := func(s string) {
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(string(original) + base(4, "#keys-old"))
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	url := "https://" + httpAddr
	call := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, url+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, "ready over HTTPS", func() bool { code, _ := call("GET", "/readyz"); return code == 200 })
	show := func() string { _, body := call("GET", "/-/config"); return body }
	has := func(cfg string, lines ...string) bool {
		for _, l := range lines {
			if !strings.Contains(cfg, l) {
				return false
			}
		}
		return true
	}
	spikeZ := func(z string) string { return fmt.Sprintf("%-26s %s", "detect.spike.min_z", z) }
	if cfg := show(); !has(cfg, spikeZ("4"), "#keys-old") || strings.Contains(cfg, token) {
		t.Fatalf("/-/config at start:\n%s", cfg)
	}
	if code, _ := get(t, url+"/-/config"); code == 200 {
		t.Fatal("/-/config answered without a token")
	}

	serial := func() string {
		c, err := tls.Dial("tcp", httpAddr, &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	renewed, err := ca.Server("keywatch", "127.0.0.1") // same files, new certificate
	if err != nil {
		t.Fatal(err)
	}
	want := leafSerial(t, renewed.TLS)

	write(string(original) + base(7, "#keys-new"))
	kw.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the new threshold and route in effect", func() bool { return has(show(), spikeZ("7"), "#keys-new") })
	waitUntil(t, "the reload counted as successful", func() bool {
		_, m := call("GET", "/metrics")
		return strings.Contains(m, "keywatch_config_last_reload_successful 1") && strings.Contains(m, "keywatch_config_last_reload_success_timestamp_seconds")
	})
	if got := serial(); got != want || got == first {
		t.Errorf("after the reload the listener serves certificate %s, want the renewed %s (first %s)", got, want, first)
	}

	write(string(original) + base(9, "#keys-broken") + "detect:\n  spike:\n    min_z: lots\n")
	kw.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the broken file refused", func() bool {
		_, m := call("GET", "/metrics")
		return strings.Contains(m, "keywatch_config_last_reload_successful 0")
	})
	if cfg := show(); !has(cfg, spikeZ("7"), "#keys-new") {
		t.Fatalf("after a refused reload the running configuration changed:\n%s", cfg)
	}

	write(strings.Replace(string(original), "kafka:\n  brokers:", "kafka:\n  group_id: elsewhere\n  brokers:", 1) + base(7, "#keys-new"))
	code, body := call("POST", "/-/reload")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "kafka.group_id") || !strings.Contains(body, "restart") {
		t.Fatalf("POST /-/reload of a restart-only change: %d %s, want 422 naming kafka.group_id", code, body)
	}
	write(string(original) + base(5, "#keys-new"))
	if code, body := call("POST", "/-/reload"); code != 200 {
		t.Fatalf("POST /-/reload: %d %s", code, body)
	}
	if !has(show(), spikeZ("5")) {
		t.Fatalf("POST /-/reload did not apply detect.spike.min_z 5:\n%s", show())
	}
	if !strings.Contains(kw.output(), "leader loops restarted with the reloaded configuration") {
		t.Errorf("the leader's loops were not restarted on the new configuration:\n%s", kw.output())
	}
}

func leafSerial(t *testing.T, c tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return request(t, "GET", url, "", "")
}

// getWith is get with a bearer token.
func getWith(t *testing.T, url, token string) (int, string) {
	t.Helper()
	return request(t, "GET", url, token, "")
}

// request sends method url with body and a bearer token (none when empty), and returns the
// answer's status and body, or 0 and the error when there is none.
func request(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rewrite replaces old with new in the file at path.
func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), old, new)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// appendYAML inserts lines right after the line section (a top-level key) of the file at path.
func appendYAML(t *testing.T, path, lines, section string) {
	t.Helper()
	rewrite(t, path, section+"\n", section+"\n"+lines)
}

// TestRunOverKafkaTLSAndSCRAM runs keywatch against brokers that require TLS and SCRAM-SHA-512:
// with the right password it ingests; with a wrong one it stays up, not ready, and /readyz and
// the log name the setting.
func TestRunOverKafkaTLSAndSCRAM(t *testing.T) {
	certs, err := testbed.NewKafkaCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := testbed.StartKafkaWith(testbed.KafkaOptions{
		Partitions: 1, Topics: []string{"auth-events", "key-lifecycle"}, TLS: certs.ServerTLS(false),
		Users: []testbed.KafkaUser{{Mechanism: "SCRAM-SHA-512", Name: "keywatch", Password: "right-password"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	security := fmt.Sprintf(`  tls:
    enabled: true
    ca_file: %q
  sasl:
    mechanism: scram-sha-512
    username: keywatch
`, certs.CA.CertFile)
	setup := func() (db, httpAddr, cfgPath string) {
		db, plain, httpAddr, cfgPath := runSetup(t, 1, "")
		rewrite(t, cfgPath, plain.Brokers[0], k.Brokers[0])
		appendYAML(t, cfgPath, security, "kafka:")
		return db, httpAddr, cfgPath
	}

	const readyToken = "ready-token-0123456789abcdef0123456"
	t.Setenv("KEYWATCH_HTTP_TOKEN", readyToken)
	t.Setenv("KEYWATCH_KAFKA_SASL_PASSWORD", "wrong-password")
	_, badAddr, badCfg := setup()
	bad := startKeywatch(t, badCfg)
	defer bad.stop()
	waitUntil(t, "/readyz names the refused login", func() bool {
		code, body := getWith(t, "http://"+badAddr+"/readyz", readyToken)
		return code == 503 && strings.Contains(body, "sasl authentication failed") && strings.Contains(body, "kafka.sasl.password")
	})
	waitUntil(t, "the log names the refused login", func() bool {
		return strings.Contains(bad.output(), "kafka.sasl.password") && strings.Contains(bad.output(), "kafka not usable")
	})

	t.Setenv("KEYWATCH_KAFKA_SASL_PASSWORD", "right-password")
	db, httpAddr, cfgPath := setup()
	kw := startKeywatch(t, cfgPath)
	defer kw.stop()
	kw.waitReady(t, httpAddr)
	if !strings.Contains(kw.output(), `SASL scram-sha-512 as \"keywatch\" over TLS`) {
		t.Errorf("the log does not say how keywatch reaches Kafka:\n%s", kw.output())
	}
	conn, err := broker.New(config.Kafka{
		TLS:  config.KafkaTLS{Enabled: true, TLS: config.TLS{CAFile: certs.CA.CertFile}},
		SASL: config.SASL{Mechanism: config.SASLScramSHA512, Username: "keywatch", Password: "right-password"},
	})
	if err != nil {
		t.Fatal(err)
	}
	k.Transport = conn.Transport()
	var events [][]byte
	for i := range 100 {
		events = append(events, fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","status":200,"request_id":"r%d"}`, time.Now().UnixMilli(), i%3, i))
	}
	if err := k.Produce(context.Background(), "auth-events", events...); err != nil {
		t.Fatal(err)
	}
	stored := ch.Conn(t, db)
	waitUntil(t, "100 events stored through TLS and SCRAM", func() bool {
		var n uint64
		_ = stored.QueryRow(context.Background(), "SELECT count() FROM auth_events").Scan(&n)
		return n == 100
	})
}
