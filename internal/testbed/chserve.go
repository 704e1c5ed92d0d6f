package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"
)

// roleEnv marks a process started by StartClickHouse as the ClickHouse launcher; its value is the
// JSON of serveOptions. Any binary that calls ServeIfLauncher first thing can play that role, so
// tests re-execute their own test binary and the demo re-executes keywatch.
const roleEnv = "KEYWATCH_TESTBED_CLICKHOUSE"

// serverLog is the server's log file in its data folder: warnings and errors only.
const serverLog = "clickhouse-server.log"

// readyLine starts what the launcher prints on stdout once the server answers; " direct=" and the
// native address ClickHouse itself listens on, behind the relay, follow it.
const readyLine = "clickhouse ready"

// exitFatal is the launcher's exit status when ClickHouse logged a fatal error: 128 + SIGABRT, as
// a shell reports a process that aborted, for that is what the server did.
const exitFatal = 134

// fatalLevel matches a log line of level Fatal: "2026.12.06 12:19:36.652372 [ 7747 ] {} <Fatal> ...".
var fatalLevel = regexp.MustCompile(`^\d{4}\.\d\d\.\d\d [\d:.]+ \[ \d+ \] \{[^}]*\} <Fatal> `)

type serveOptions struct {
	Lib      string `json:"lib"`
	Dir      string `json:"dir"`
	TCPPort  int    `json:"tcp_port"`
	HTTPPort int    `json:"http_port"`
	Config   string `json:"config,omitempty"` // a configuration file to load, "" for none
	NoRelay  bool   `json:"no_relay,omitempty"`
}

// ServeIfLauncher turns this process into the ClickHouse launcher when StartClickHouse started it,
// and exits when the server stops. Otherwise it returns at once. Call it first in main and TestMain.
func ServeIfLauncher() {
	raw := os.Getenv(roleEnv)
	if raw == "" {
		return
	}
	var opts serveOptions
	if err := json.Unmarshal([]byte(raw), &opts); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: launcher options in %s: %v\n", roleEnv, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = untilParentDies(ctx)
	if err := serveClickHouse(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// untilParentDies returns a context that ends when this process is re-parented, i.e. when the
// process that started it has died without stopping it.
func untilParentDies(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}
