//go:build !nolauncher

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/keywatch/keywatch/internal/testbed"
)

const clickhouseServerDescription = `
Serve a ClickHouse server on loopback from the embedded library (libchdb.so, fetched by 'make chdb')
with its data in --data, until Ctrl-C. Use it to query what 'keywatch demo' stored after the demo
has stopped, for example:

  keywatch clickhouse-server --data demo-data/clickhouse
  curl 'http://127.0.0.1:8123/?query=SELECT+count()+FROM+keywatch.auth_events'`

func clickhouseServerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("clickhouse-server", "clickhouse-server --data DIR [--tcp-port N] [--http-port N]", clickhouseServerDescription, stderr)
	data := fs.String("data", "demo-data/clickhouse", "ClickHouse data `folder`")
	tcp := fs.Int("tcp-port", 9000, "native protocol port on 127.0.0.1")
	httpPort := fs.Int("http-port", 8123, "HTTP interface port on 127.0.0.1")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	ch, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: dir, TCPPort: *tcp, HTTPPort: *httpPort})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ClickHouse serves %s\n  native: %s\n  http:   http://%s/play\nCtrl-C stops it.\n", dir, ch.Addr, ch.HTTPAddr)
	select {
	case <-ctx.Done():
	case <-ch.Exited():
		return ch.Gone()
	}
	ch.Stop()
	return nil
}
