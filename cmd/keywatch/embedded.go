//go:build !nolauncher

package main

import "github.com/keywatch/keywatch/internal/testbed"

// serveIfLauncher serves the embedded ClickHouse when this process was started as the launcher
// of `keywatch demo` or `keywatch clickhouse-server`, and never returns then.
func serveIfLauncher() { testbed.ServeIfLauncher() }
