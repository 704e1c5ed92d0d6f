package demo

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/keywatch/keywatch/internal/testbed"
)

// ClickHouseDescription is what `keywatch-demo clickhouse-server` does, for its --help.
const ClickHouseDescription = `
Serve a ClickHouse server on loopback from the embedded library (libchdb.so, fetched by 'make chdb')
with its data in --data, until Ctrl-C. Use it to query what the demo stored after it has stopped,
for example:

  bin/keywatch-demo clickhouse-server --data demo-data/clickhouse
  curl 'http://127.0.0.1:8123/?query=SELECT+count()+FROM+keywatch.auth_events'`

// ServeClickHouse serves the embedded ClickHouse with its data in dir on 127.0.0.1's tcp and
// httpPort until ctx ends.
func ServeClickHouse(ctx context.Context, dir string, tcp, httpPort int, stdout io.Writer) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	ch, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: dir, TCPPort: tcp, HTTPPort: httpPort})
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
