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
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	server, err := StartClickHouse(ctx, ClickHouseOptions{Dir: filepath.Join(dir, "data")})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer server.Stop()
	*ch = server
	return m.Run()
}

// Conn opens a native connection to database on the server, closed when the test ends.
func (c *ClickHouse) Conn(t testing.TB, database string) driver.Conn {
	t.Helper()
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
	conn := c.Conn(t, "default")
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testbed: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
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
