// Command keywatch-demo runs `make demo`: keywatch end to end on this machine with an embedded
// ClickHouse and an in-process Kafka broker (package demo). It is built apart from the keywatch
// binary, which links none of this. `keywatch-demo clickhouse-server` serves the demo's data
// afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keywatch/keywatch/demo"
	"github.com/keywatch/keywatch/internal/testbed"
)

func main() {
	testbed.ServeIfLauncher() // when started as the demo's embedded ClickHouse
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the demo, or `clickhouse-server`, and returns the exit code: 2 for a wrong command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var err error
	if len(args) > 0 && args[0] == "clickhouse-server" {
		err = clickhouseServer(ctx, args[1:], stdout, stderr)
	} else {
		err = runDemo(ctx, args, stdout, stderr)
	}
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "keywatch-demo: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "keywatch-demo: %v\n", err)
		return 1
	}
}

type usageError struct{ error }

func newFlags(usage, description string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keywatch-demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: keywatch-demo %s\n\n%s\n\nFlags:\n", usage, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("[--data DIR] [--duration D] [--revoke dry-run|auto] [--slack-channel C]", demo.Description, stderr)
	var o demo.Options
	fs.StringVar(&o.Data, "data", "demo-data", "`folder` for ClickHouse data and keywatch's log")
	fs.IntVar(&o.Rate, "rate", 2000, "simulated authentication events per second")
	fs.DurationVar(&o.Duration, "duration", 150*time.Second, "stop after this long at the latest (0: run until Ctrl-C)")
	fs.StringVar(&o.Listen, "http", "127.0.0.1:8466", "address for /metrics, /healthz and /readyz (empty: none)")
	fs.DurationVar(&o.History, "history", 72*time.Hour, "simulated past traffic written before the live traffic starts")
	fs.StringVar(&o.Revoke, "revoke", "dry-run", "revoke policy for leak alerts: dry-run (audit only) or auto (send the signed webhook to the demo's receiver)")
	fs.StringVar(&o.SlackChannel, "slack-channel", "#keywatch-demo", "Slack channel of the alerts (a real one when KEYWATCH_SLACK_TOKEN is set)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := o.Check(); err != nil {
		return usageError{err}
	}
	return demo.Run(ctx, o, stdout)
}

func clickhouseServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("clickhouse-server --data DIR [--tcp-port N] [--http-port N]", demo.ClickHouseDescription, stderr)
	data := fs.String("data", "demo-data/clickhouse", "ClickHouse data `folder`")
	tcp := fs.Int("tcp-port", 9000, "native protocol port on 127.0.0.1")
	httpPort := fs.Int("http-port", 8123, "HTTP interface port on 127.0.0.1")
	if err := parse(fs, args); err != nil {
		return err
	}
	return demo.ServeClickHouse(ctx, *data, *tcp, *httpPort, stdout)
}
