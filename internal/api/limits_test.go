package api

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	adminTok = "admin-token-0123456789abcdef0123456789"
	writeTok = "write-token-0123456789abcdef0123456789"
	readTok  = "read-token-0123456789abcdef01234567890"
)

func TestReadyzErrorsOnlyOnTheAdminListenerOrToAToken(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	s.SetChecks(map[string]Check{"clickhouse": func(context.Context) error { return io.ErrUnexpectedEOF }})
	s.Serve(http.NotFoundHandler(), Tokens{Admin: adminTok})
	for path, want := range map[string]int{"/readyz": 404, "/metrics": 404, "/healthz": 404} {
		rec := httptest.NewRecorder()
		s.public.Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("public listener %s: %d, want %d (served on the admin listener)", path, rec.Code, want)
		}
	}
	rec := httptest.NewRecorder()
	s.admin.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if !strings.Contains(rec.Body.String(), io.ErrUnexpectedEOF.Error()) {
		t.Errorf("admin /readyz: %s, want the check's error", rec.Body.String())
	}
}

// serveOn runs s on a loopback listener (and an admin one) until the test ends; it returns their
// addresses and a channel that receives Run's result.
func serveOn(t *testing.T, s *Server, ctx context.Context) (public, admin string, done <-chan error) {
	t.Helper()
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var al net.Listener
	if s.admin != nil {
		if al, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		admin = al.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- s.serve(ctx, pl, al) }()
	return pl.Addr().String(), admin, errc
}

// closedByServer reports whether the server closes c: a read returns io.EOF (or a reset) before
// the generous deadline, which only catches a connection never closed.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func TestSlowAndIdleConnectionsAreClosedAndShutdownStillSucceeds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(Options{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler),
		Limits: Limits{ReadTimeout: 500 * time.Millisecond, IdleTimeout: 500 * time.Millisecond, MaxConnections: 16},
	})
	mux := http.NewServeMux()
	mux.Handle("POST /v1/lifecycle", Guard{Tokens: Tokens{Admin: adminTok}}.Require(ScopeWrite, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		WriteJSON(w, http.StatusOK, map[string]string{})
	})))
	s.Serve(mux, Tokens{Admin: adminTok})
	public, admin, done := serveOn(t, s, ctx)

	// A body trickled a byte at a time is cut off by the read timeout.
	slow, err := net.Dial("tcp", public)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = io.WriteString(slow, "POST /v1/lifecycle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+adminTok+"\r\nContent-Length: 1000\r\n\r\n")
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := slow.Write([]byte("{")); err != nil {
					return
				}
			}
		}
	}()
	if !closedByServer(t, slow) {
		t.Error("a connection trickling its body was not closed")
	}
	close(stop)

	// An idle keep-alive connection is closed by the idle timeout.
	idle, err := net.Dial("tcp", public)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /v1/silences HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if !closedByServer(t, idle) {
		t.Error("an idle keep-alive connection was not closed")
	}

	// With the public listener's connections all taken, the admin listener still answers.
	var held []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", public)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	r, err := hc.Get("http://" + admin + "/healthz")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("admin /healthz with the public listener full: %v %v", r, err)
	}
	_ = r.Body.Close()

	// A client mid-request at shutdown does not make it fail.
	mid, err := net.Dial("tcp", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer mid.Close()
	_, _ = io.WriteString(mid, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("shutdown with a client connected: %v, want nil", err)
	}
	_ = held
}

func TestReadyzErrorsToATokenBeforeTheAppIsServed(t *testing.T) {
	s := New(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler), Tokens: Tokens{Read: readTok}})
	s.SetChecks(map[string]Check{"clickhouse": func(context.Context) error { return io.ErrUnexpectedEOF }})
	// The token's request first: what it may see must not stay shown to the next caller.
	for _, c := range []struct{ auth, want string }{{"Bearer " + readTok, io.ErrUnexpectedEOF.Error()}, {"", "not ready"}, {"Bearer " + readTok, io.ErrUnexpectedEOF.Error()}} {
		auth, want := c.auth, c.want
		req := httptest.NewRequest("GET", "/readyz", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		s.public.Handler.ServeHTTP(rec, req)
		if !strings.Contains(rec.Body.String(), `"clickhouse":"`+want+`"`) {
			t.Errorf("/readyz with %q before Serve: %s, want %q", auth, rec.Body.String(), want)
		}
	}
}
