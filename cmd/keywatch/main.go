// Command keywatch watches API keys through their rotation: it ingests gateway authentication logs
// and key lifecycle events from Kafka into ClickHouse. See `keywatch help`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "ingest events from Kafka into ClickHouse and run the detectors (the daemon)", runCmd},
		{"migrate", "create or upgrade the ClickHouse schema, then exit", migrateCmd},
		{"detect", "run the detectors now (--once) and print their findings", detectCmd},
		{"readiness", "say whether a key is safe to retire (exit 0 only when safe)", readinessCmd},
		{"revoke", "revoke a key now through the signed revoke webhook, under the guardrails", revokeCmd},
		{"rollback", "extend a key's grace period or reactivate it through the signed webhook (refused for leaked keys)", rollbackCmd},
		{"report", "print the rotation compliance report (report rotations --since 90d)", reportCmd},
		{"check-config", "validate a configuration and print the effective values", checkConfigCmd},
		{"version", "print the version", versionCmd},
	}
}

const overview = `keywatch watches API keys through their rotation.

Gateways write one authentication event per request to Kafka, key-management systems write key
lifecycle events; keywatch stores both in ClickHouse so that lingering clients, failure spikes
after a rollover and leak-like usage can be found.

Usage:
  keywatch <command> [flags]

Commands:
%s
Run 'keywatch <command> --help' for a command's flags. Configuration is one YAML file
(--config or KEYWATCH_CONFIG) with every value overridable by KEYWATCH_* environment variables;
'keywatch check-config --help' lists them all.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, overview, commandList())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(exitCode)):
			var code exitCode
			errors.As(err, &code)
			return int(code)
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "keywatch %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "keywatch %s: %v\n", c.name, err)
			return 1
		}
	}
	if args[0] == "demo" || args[0] == "clickhouse-server" {
		fmt.Fprintf(stderr, "keywatch: %s is not in this binary: the demo is its own program (cmd/keywatch-demo); run `make demo` from the source tree\n", args[0])
		return 2
	}
	fmt.Fprintf(stderr, "keywatch: unknown command %q\n\n", args[0])
	fmt.Fprintf(stderr, overview, commandList())
	return 2
}

func commandList() string {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-18s %s\n", c.name, c.summary)
	}
	return b.String()
}

// usageError is a mistake in the command line or configuration: exit code 2.
type usageError struct{ error }

// newFlags returns a flag set whose --help prints usage, a description and the flags.
func newFlags(name, usage, description string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: keywatch %s\n\n%s\n", usage, strings.TrimSpace(description))
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// parseFlags parses the flags of a command that takes arguments after them.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// parseConfig parses the flags of a command whose only flag is --config and loads the
// configuration it names; it returns the file's path too ("" for none).
func parseConfig(name, description string, args []string, stderr io.Writer) (config.Config, string, error) {
	fs := newFlags(name, name+" [--config FILE]", description, stderr)
	path := configFlag(fs)
	if err := parse(fs, args); err != nil {
		return config.Config{}, "", err
	}
	cfg, err := loadConfig(*path)
	return cfg, *path, err
}

// configFlag adds --config to fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv("KEYWATCH_CONFIG"), "YAML configuration `file` (default $KEYWATCH_CONFIG; none: defaults and KEYWATCH_* only)")
}

// loadConfig loads the configuration at path (none when empty) with the process's environment.
func loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// openForQueries is the set-up of commands that only query ClickHouse (detect, readiness): the
// instant to judge as of (--at, default now), the configuration at path, and a connection.
func openForQueries(path, at string) (time.Time, config.Config, driver.Conn, error) {
	now := time.Now().UTC()
	if at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return now, config.Config{}, nil, usageError{fmt.Errorf("--at %q: want RFC 3339, e.g. 2026-11-25T16:00:00Z", at)}
		}
		now = t.UTC()
	}
	cfg, err := config.LoadForQueries(path, os.Environ())
	if err != nil {
		return now, cfg, nil, usageError{err}
	}
	conn, err := schema.Open(cfg.ClickHouse, cfg.ClickHouse.Database)
	return now, cfg, conn, err
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exitCode ends a command with a code of its own and no error message (the command printed why).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit code %d", int(c)) }

func versionString() string {
	v := version
	if rev := revision(); len(rev) >= 12 {
		v += " (" + rev[:12] + ")"
	}
	return v
}

// revision is the commit the binary was built from, when the Go toolchain recorded it.
func revision() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

func versionCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "version", "Print keywatch's version and the commit it was built from.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keywatch %s\n", versionString())
	return nil
}
