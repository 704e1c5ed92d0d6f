package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/schema/schematest"
	"github.com/keywatch/keywatch/internal/testbed"
)

var ch *testbed.SharedClickHouse

// asMainEnv makes this test binary run main() instead of the tests, so a test can start the
// keywatch command as a process of its own and send it signals.
const asMainEnv = "KEYWATCHTEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Args = append([]string{"keywatch"}, os.Args[1:]...)
		main()
	}
	testbed.Main(m, &ch)
}

func TestEveryCommandExplainsItself(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := dispatch(context.Background(), []string{c.name, "--help"}, &out, &out); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if !strings.Contains(out.String(), "Usage: keywatch "+c.name) || len(out.String()) < 60 {
				t.Fatalf("--help printed:\n%s", out.String())
			}
		})
	}
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{"help"}, &out, &out); code != 0 || !strings.Contains(out.String(), "check-config") {
		t.Fatalf("help: exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := dispatch(context.Background(), []string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "keywatch ") {
		t.Fatalf("--version: exit %d:\n%s", code, out.String())
	}
	if code := dispatch(context.Background(), []string{"frobnicate"}, &out, &out); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Setenv("KEYWATCH_FINGERPRINT_KEY", "0123456789abcdef-test")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kafka:\n  brokers: [\"x:y\"]\n"), 0o600)
	var stdout, stderr bytes.Buffer
	if code := dispatch(context.Background(), []string{"check-config", "--config", bad}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `kafka.brokers[0]: "x:y": invalid port`) {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
	badMapping := filepath.Join(t.TempDir(), "mapping.yaml")
	os.WriteFile(badMapping, []byte(`
ingest:
  mapping: mygw
  mappings:
    mygw:
      ts: {path: time, format: epoch_us}
      kei_id: {path: key}
`), 0o600)
	stderr.Reset()
	if code := dispatch(context.Background(), []string{"check-config", "--config", badMapping}, &stdout, &stderr); code != 2 {
		t.Fatalf("wrong mapping: exit code %d, want 2", code)
	}
	for _, want := range []string{"ingest.mappings.mygw.ts.format", "ingest.mappings.mygw.kei_id"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("check-config of a wrong mapping does not name %s:\n%s", want, stderr.String())
		}
	}
	for env, want := range map[string]string{
		"KEYWATCH_HTTP_TOKEN":           "http.token: 1 characters, want at least 32",
		"KEYWATCH_LEAK_REPORTS_TOKEN":   "leak_reports.token: 1 characters, want at least 32",
		"KEYWATCH_SLACK_SIGNING_SECRET": "slack.signing_secret: 1 characters, want at least 32",
	} {
		t.Run("short "+env, func(t *testing.T) {
			t.Setenv(env, "x")
			var stdout, stderr bytes.Buffer
			if code := dispatch(context.Background(), []string{"check-config"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), want) {
				t.Errorf("check-config with a 1-character %s: exit %d, stderr:\n%s\nwant exit 2 and %q", env, code, stderr.String(), want)
			}
		})
	}
	stdout.Reset()
	if code := dispatch(context.Background(), []string{"check-config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("defaults: exit code %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "fingerprint.key") || strings.Contains(stdout.String(), "0123456789abcdef-test") {
		t.Fatalf("check-config must list values and hide secrets:\n%s", stdout.String())
	}
	for _, want := range []string{"kafka connection:          plaintext, no SASL", "clickhouse connection:     plaintext"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("check-config does not say %q:\n%s", want, stdout.String())
		}
	}
	t.Setenv("KEYWATCH_KAFKA_TLS_ENABLED", "true")
	t.Setenv("KEYWATCH_KAFKA_TLS_INSECURE_SKIP_VERIFY", "true")
	t.Setenv("KEYWATCH_KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("KEYWATCH_KAFKA_SASL_USERNAME", "kw")
	t.Setenv("KEYWATCH_KAFKA_SASL_PASSWORD", "kafka-password-test")
	stdout.Reset()
	if code := dispatch(context.Background(), []string{"check-config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("SCRAM over TLS: exit code %d: %s", code, stderr.String())
	}
	for _, want := range []string{`SASL scram-sha-512 as "kw" over TLS`, "INSECURE: kafka.tls.insecure_skip_verify"} {
		if !strings.Contains(stdout.String(), want) || strings.Contains(stdout.String(), "kafka-password-test") {
			t.Errorf("check-config does not say %q (or shows the password):\n%s", want, stdout.String())
		}
	}
}

// TestRunIngestsAndStopsOnSIGTERM starts `keywatch run` as a process, feeds it events, checks
// health, readiness and metrics, then stops it with SIGTERM and expects exit code 0.
func TestRunIngestsAndStopsOnSIGTERM(t *testing.T) {
	db, kafka, httpAddr, cfgPath := runSetup(t, 2, "")
	kw := startKeywatch(t, cfgPath)

	base := "http://" + httpAddr
	kw.waitReady(t, httpAddr)
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}

	var values [][]byte
	for i := range 500 {
		values = append(values, fmt.Appendf(nil, `{"ts":%d,"key_id":"kid_%d","status":200,"request_id":"r%d"}`, time.Now().UnixMilli(), i%7, i))
	}
	values = append(values, []byte(`not json`))
	if err := kafka.Produce(context.Background(), "auth-events", values...); err != nil {
		t.Fatal(err)
	}
	conn := ch.Conn(t, db)
	waitUntil(t, "500 events and 1 dead letter stored", func() bool {
		var events, dead uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM auth_events").Scan(&events)
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM dead_letters").Scan(&dead)
		return events == 500 && dead == 1
	})
	// The counters move just after ClickHouse acknowledged the batch, so they may lag the rows.
	for _, want := range []string{
		`keywatch_ingest_messages_total{result="stored",topic="auth-events"} 500`,
		`keywatch_ingest_dead_letters_total{reason="invalid_json"} 1`,
		"keywatch_ingest_insert_seconds_bucket",
		`keywatch_build_info{goversion="go`,
		"keywatch_config_last_reload_successful 1",
	} {
		waitUntilFor(t, "/metrics shows "+want, 10*time.Second, func() bool {
			_, metrics := get(t, base+"/metrics")
			return strings.Contains(metrics, want)
		})
	}

	out, err := kw.stop()
	if err != nil {
		t.Fatalf("keywatch run after SIGTERM: %v; output:\n%s", err, out)
	}
	if !strings.Contains(out, "stopped cleanly") {
		t.Fatalf("no clean stop in the log:\n%s", out)
	}
}

// runSetup gives a test of `keywatch run` a database of its own, a broker with both topics of
// the given partitions, a free HTTP address and a configuration file for them (plus extraYAML).
func runSetup(t *testing.T, partitions int32, extraYAML string) (db string, kafka *testbed.Kafka, httpAddr, cfgPath string) {
	t.Helper()
	db = ch.NewDatabase(t)
	kafka, err := testbed.StartKafka(partitions, "auth-events", "key-lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	httpAddr = freeAddr(t)
	cfgPath = filepath.Join(t.TempDir(), "keywatch.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
kafka:
  brokers: [%q]
clickhouse:
  addr: [%q]
  database: %s
ingest:
  batch_max_wait: 100ms
http:
  listen: %q
`, kafka.Brokers[0], ch.Addr(t), db, httpAddr)+extraYAML), 0o600)
	return db, kafka, httpAddr, cfgPath
}

// freeAddr is a loopback address with a port free a moment ago, for a listener of keywatch run.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntilFor(t, what, time.Minute, cond)
}

func waitUntilFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is `keywatch run` started from this test binary.
type process struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan error
}

// lockedBuffer is the process's output, read by the test while the process writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// output is what the process has logged so far.
func (p *process) output() string { return p.out.String() }

func startKeywatch(t *testing.T, cfgPath string) *process {
	t.Helper()
	p := &process{out: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "run", "--config", cfgPath)
	p.cmd.Env = append(os.Environ(), asMainEnv+"=1", "KEYWATCH_FINGERPRINT_KEY=0123456789abcdef-test")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// waitReady waits until the process's /readyz answers 200, failing the test if it exits first.
func (p *process) waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	waitUntil(t, "readyz answers 200", func() bool {
		select {
		case err := <-p.exited:
			t.Fatalf("keywatch run exited (%v):\n%s", err, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and returns the process's output and its exit error.
func (p *process) stop() (string, error) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		return p.out.String(), err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return p.out.String(), fmt.Errorf("no exit within 30s of SIGTERM")
	}
}

// migratedDB gives the test a database of its own with keywatch's schema, and a connection to it.
// migratedDB is a migrated database whose rollups ClickHouse's views fill from the events its
// tests insert (no ingest runs on it).
func migratedDB(t *testing.T) (string, driver.Conn) {
	t.Helper()
	db, conn := schematest.NewDatabase(t, ch)
	if err := ingest.CreateRollupViews(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	return db, conn
}
