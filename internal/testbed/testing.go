package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// Main is TestMain for a package whose tests need ClickHouse. It plays the launcher when this test
// binary was started as one, otherwise starts (or reuses) one server for the package, stores it in
// *ch, runs the tests and stops the server.
func Main(m *testing.M, ch **ClickHouse) {
	ServeIfLauncher()
	os.Exit(runWithClickHouse(m, ch))
}

func runWithClickHouse(m *testing.M, ch **ClickHouse) int {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			return m.Run() // fuzzing: the fuzz targets need no server, and each worker would start one
		}
	}
	if addr := os.Getenv(reuseEnv); addr != "" {
		httpAddr := os.Getenv(reuseHTTPEnv)
		if httpAddr == "" {
			httpAddr = strings.Split(addr, ":")[0] + ":8123"
		}
		*ch = &ClickHouse{Addr: addr, HTTPAddr: httpAddr}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keywatch-clickhouse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err := StartClickHouse(ctx, ClickHouseOptions{Dir: filepath.Join(dir, "data")})
	cancel()
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*ch = server
	code := m.Run()
	gone := server.Gone()
	server.Stop()
	if gone == nil {
		os.RemoveAll(dir)
	} else if server.lostTo() == "" { // it died with no test watching
		fmt.Fprintln(os.Stderr, gone)
	}
	return code
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
