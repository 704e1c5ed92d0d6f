package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// reuseEnv names a running ClickHouse server (native host:port) for tests to use instead of
// launching their own; reuseHTTPEnv names its HTTP interface (host:port, default host:8123).
const (
	reuseEnv     = "KEYWATCH_TEST_CLICKHOUSE"
	reuseHTTPEnv = "KEYWATCH_TEST_CLICKHOUSE_HTTP"
)

// Main is TestMain for a package whose tests may need ClickHouse. It plays the launcher when this
// test binary was started as one, otherwise sets *ch to the package's shared server, which starts
// (or is reused) on the first call that needs it, runs the tests and stops the server if it was
// started: tests that touch no database start nothing and need no libchdb.so.
func Main(m *testing.M, ch **SharedClickHouse) {
	ServeIfLauncher()
	s := &SharedClickHouse{}
	*ch = s
	code := m.Run()
	s.stop()
	os.Exit(code)
}

// SharedClickHouse is the one ClickHouse server of a test binary, started on first use: by
// Server, NewDatabase, Conn, Addr or HTTPAddr, whichever a test calls first, from any number of
// parallel tests. A server named by KEYWATCH_TEST_CLICKHOUSE is reused instead.
type SharedClickHouse struct {
	once   sync.Once
	server *ClickHouse
	err    error  // why the server could not be started
	dir    string // the temporary folder of a launched server
}

// start launches or names the server, once.
func (s *SharedClickHouse) start() {
	s.once.Do(func() {
		if addr := os.Getenv(reuseEnv); addr != "" {
			httpAddr := os.Getenv(reuseHTTPEnv)
			if httpAddr == "" {
				httpAddr = strings.Split(addr, ":")[0] + ":8123"
			}
			s.server = &ClickHouse{Addr: addr, HTTPAddr: httpAddr}
			return
		}
		dir, err := os.MkdirTemp("", "keywatch-clickhouse-")
		if err != nil {
			s.err = fmt.Errorf("testbed: make a folder for the shared ClickHouse server: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, err := StartClickHouse(ctx, ClickHouseOptions{Dir: filepath.Join(dir, "data")})
		if err != nil {
			os.RemoveAll(dir)
			s.err = err
			return
		}
		s.server, s.dir = server, dir
	})
}

// Server returns the shared server, starting it on first use, and makes t fail if the server dies
// while t runs (see watch). t fails at once if the server cannot be started.
func (s *SharedClickHouse) Server(t testing.TB) *ClickHouse {
	t.Helper()
	s.start()
	if s.err != nil {
		t.Fatal(s.err)
	}
	s.server.watch(t)
	return s.server
}

// Addr is the shared server's native protocol address, host:port.
func (s *SharedClickHouse) Addr(t testing.TB) string {
	t.Helper()
	return s.Server(t).Addr
}

// HTTPAddr is the shared server's HTTP interface address, host:port.
func (s *SharedClickHouse) HTTPAddr(t testing.TB) string {
	t.Helper()
	return s.Server(t).HTTPAddr
}

// NewDatabase creates a database of t's own on the shared server (see ClickHouse.NewDatabase).
func (s *SharedClickHouse) NewDatabase(t testing.TB) string {
	t.Helper()
	return s.Server(t).NewDatabase(t)
}

// Conn opens a native connection to database on the shared server, closed when t ends.
func (s *SharedClickHouse) Conn(t testing.TB, database string) driver.Conn {
	t.Helper()
	return s.Server(t).Conn(t, database)
}

// stop ends a server that start launched and removes its folder, unless it died: then the folder
// stays for the post-mortem, and a death no test was told of is printed.
func (s *SharedClickHouse) stop() {
	s.once.Do(func() {}) // no start after the tests
	server := s.server
	if server == nil || server.cmd == nil {
		return
	}
	gone := server.Gone()
	server.Stop()
	if gone == nil {
		os.RemoveAll(s.dir)
	} else if server.lostTo() == "" { // it died with no test watching
		fmt.Fprintln(os.Stderr, gone)
	}
}

// watch makes t fail when the server is gone: at once if it is gone already, otherwise when t
// ends if the server died while t ran. The first test to learn of a death gets the launcher's exit
// status and the end of the server's log; the tests after it are told that the shared server is
// gone and where to read why, instead of failing on a refused connection.
func (c *ClickHouse) watch(t testing.TB) {
	t.Helper()
	if c.cmd == nil {
		return // a reused server: not ours to watch
	}
	if err := c.lost(t.Name()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.settle() // a test that failed on the server may have seen it die: let the death show
		}
		if c.lostTo() == t.Name() {
			return // told already
		}
		if err := c.lost(t.Name()); err != nil {
			t.Error(err)
		}
	})
}

// lost returns nil while the server runs. After its death it returns Gone's report to the first
// test that asks, and to the others a pointer to that test.
func (c *ClickHouse) lost(test string) error {
	gone := c.Gone()
	if gone == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lostIn == "" {
		c.lostIn = test
		return gone
	}
	return fmt.Errorf("testbed: the shared ClickHouse server at %s is gone: it died during %s, whose failure shows its exit status and log", c.Addr, c.lostIn)
}

// lostTo is the test that was told of the server's death, "" while none was.
func (c *ClickHouse) lostTo() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lostIn
}

// settle waits up to 5 s until the server either answers a ping or has exited; a server that logged
// a fatal error stops answering at once but its launcher needs a moment to notice and end it.
func (c *ClickHouse) settle() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return
		default:
		}
		if answersPing(c.HTTPAddr) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Conn opens a native connection to database on the server, closed when the test ends.
func (c *ClickHouse) Conn(t testing.TB, database string) driver.Conn {
	t.Helper()
	c.watch(t)
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{c.Addr},
		Auth: clickhouse.Auth{Database: database, Username: "default"},
	})
	if err != nil {
		t.Fatalf("testbed: open clickhouse %s: %v", c.Addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a database of the test's own and drops it when the test ends (keeps it
// when the test failed and KEYWATCH_TEST_KEEP is set, to look at).
func (c *ClickHouse) NewDatabase(t testing.TB) string {
	t.Helper()
	name := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + "_" + randomSuffix(6)
	conn := c.Conn(t, "default") // watches the server for t
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testbed: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if c.Gone() != nil {
			return // watch has said so
		}
		if t.Failed() && os.Getenv("KEYWATCH_TEST_KEEP") != "" {
			t.Logf("testbed: kept database %s on %s", name, c.Addr)
			return
		}
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" SYNC"); err != nil {
			t.Logf("testbed: drop database %s: %v", name, err)
		}
	})
	return name
}
