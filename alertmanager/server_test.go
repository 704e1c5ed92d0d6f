package alertmanager

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keywatch/keywatch/internal/testbed"
)

// The acceptance tests run the real Alertmanager, built from the Go module proxy at the version the
// Makefile pins (testbed.Tool).
var alertmanager = testbed.Tool{
	Name: "alertmanager", Package: "github.com/prometheus/alertmanager/cmd/alertmanager",
	VersionVar: "ALERTMANAGER_VERSION", EnvVar: "ALERTMANAGER_BIN",
}

// amConfig routes every alert to one webhook receiver, grouped per alert name and key, with short
// timers; repeat_interval is long, so a second notification of an unchanged group is a duplicate.
const amConfig = `route:
  receiver: hook
  group_by: [alertname, key_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`

// server is one real Alertmanager on loopback, clustering off.
type server struct {
	t       *testing.T
	URL     string // http://127.0.0.1:port
	addr    string
	config  string
	args    []string // more flags
	auth    []string // user and password every request needs, if any
	cmd     *exec.Cmd
	log     *bytes.Buffer
	stopped chan struct{}
}

// startAlertmanager runs an Alertmanager on a free loopback port that notifies receiverURL.
func startAlertmanager(t *testing.T, receiverURL string) *server {
	t.Helper()
	return startWithConfig(t, fmt.Sprintf(amConfig, receiverURL))
}

// startWithConfig runs an Alertmanager with the configuration yml on a free loopback port.
func startWithConfig(t *testing.T, yml string) *server {
	t.Helper()
	return startWith(t, yml, nil)
}

// startWith runs an Alertmanager with the configuration yml on a free loopback port; with auth,
// every request needs basic authentication with it ([user, password]).
func startWith(t *testing.T, yml string, auth []string) *server {
	t.Helper()
	config := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(config, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, addr: freeAddr(t), config: config}
	if auth != nil {
		s.auth = auth
		web := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(web, fmt.Appendf(nil, "basic_auth_users:\n  %s: %q\n", auth[0], testPasswordHash), 0o600); err != nil {
			t.Fatal(err)
		}
		s.args = []string{"--web.config.file=" + web}
	}
	s.URL = "http://" + s.addr
	s.start(t.TempDir())
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("alertmanager at %s logged:\n%s", s.URL, s.log)
		}
	})
	return s
}

// start runs the Alertmanager process on storage and waits until it is ready.
func (s *server) start(storage string) {
	s.t.Helper()
	s.log = &bytes.Buffer{}
	s.cmd = exec.Command(alertmanager.Binary(s.t), append([]string{
		"--config.file=" + s.config, "--storage.path=" + storage, "--web.listen-address=" + s.addr,
		"--cluster.listen-address=", "--log.level=debug"}, s.args...)...)
	out := &lockedWriter{w: s.log}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start alertmanager: %v", err)
	}
	s.stopped = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.stopped) }()
	waitFor(s.t, "alertmanager "+s.URL+" ready", func() (bool, string) {
		select {
		case <-s.stopped:
			s.t.Fatalf("alertmanager exited at start:\n%s", s.log)
		default:
		}
		resp, err := s.get("/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// kill ends the process at once (SIGKILL: nothing is flushed) and waits for it.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.stopped
	s.cmd = nil
}

// restart kills the Alertmanager and starts it again on the same address with empty storage:
// whatever it holds afterwards, it was told again.
func (s *server) restart() {
	s.t.Helper()
	s.kill()
	s.start(s.t.TempDir())
}

// get asks the Alertmanager for path, authenticated when it needs it.
func (s *server) get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		return nil, err
	}
	if s.auth != nil {
		req.SetBasicAuth(s.auth[0], s.auth[1])
	}
	return http.DefaultClient.Do(req)
}

// testPassword is the basic-authentication password of the tests' Alertmanager that needs one;
// testPasswordHash its bcrypt hash, as Alertmanager's web.config.file takes it.
const (
	testPassword     = "keywatch-test-password-0123456789"
	testPasswordHash = "$2a$04$NHpDHmVsFc1dnumI2dHKO./UvAYMZj10zP2Z3SSLq1dhTqacbAGQ6"
)

// amAlert is an alert as GET /api/v2/alerts returns it.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// alerts are the alerts the Alertmanager holds that have not ended.
func (s *server) alerts() ([]amAlert, error) {
	resp, err := s.get("/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s", resp.Status)
	}
	var out []amAlert
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// metric is the value of an unlabelled metric of the Alertmanager's /metrics.
func (s *server) metric(name string) (float64, error) {
	resp, err := s.get("/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}

// receiver is the webhook the Alertmanagers notify; it keeps every notification.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notification
}

// notification is the body of an Alertmanager webhook.
type notification struct {
	Status string `json:"status"` // firing or resolved
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var n notification
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&n); err != nil {
			t.Errorf("the receiver got a body it cannot read: %v", err)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, n)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// all are the notifications so far.
func (r *receiver) all() []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notification(nil), r.got...)
}

// count is how many notifications with status (firing, resolved) the receiver got.
func (r *receiver) count(status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, got := range r.got {
		if got.Status == status {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a minute with cond's last word.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s; last: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr is a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
