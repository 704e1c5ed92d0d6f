//go:build nolauncher

package main

import (
	"context"
	"errors"
	"io"
)

// A build with -tags nolauncher (the container image) leaves out `keywatch demo` and `keywatch
// clickhouse-server` and with them internal/testbed: the embedded ClickHouse loads libchdb.so
// through purego, whose libc imports would make the binary dynamic, and the demo's in-process
// Kafka broker has no place in a production binary.

var errNoEmbeddedClickHouse = errors.New("this keywatch was built without the embedded ClickHouse (-tags nolauncher, as in the container image); use `make demo` from source, or point clickhouse.addr at a ClickHouse server")

func serveIfLauncher() {}

func demoCmd(context.Context, []string, io.Writer, io.Writer) error { return errNoEmbeddedClickHouse }

func clickhouseServerCmd(context.Context, []string, io.Writer, io.Writer) error {
	return errNoEmbeddedClickHouse
}
