// Package benchmark owns what the benchmark commands (cmd/bench-*) share as programs: running one
// (its flags, signals and exit codes) and running keywatch beside it as a subprocess (its
// environment, its log). It does not own what they measure, the servers they start
// (internal/testbed) nor the traffic they send (demo/simulate).
package benchmark

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keywatch/keywatch/internal/testbed"
)

// Main runs the benchmark command name: its binary is also the embedded ClickHouse's launcher;
// parse reads the arguments, run measures until ctx ends (SIGINT, SIGTERM) and reports whether
// every target was met. It exits 0 after -help, 2 on bad arguments, 1 on an error or a missed
// target.
func Main[O any](name string, parse func(args []string) (O, error), run func(ctx context.Context, o O) (bool, error)) {
	testbed.ServeIfLauncher()
	o, err := parse(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ok, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// KeywatchEnv is the environment of a keywatch subprocess: ours without any KEYWATCH_* variable
// (keywatch rejects unknown ones, and a stray KEYWATCH_CONFIG would change what is measured),
// plus settings.
func KeywatchEnv(settings ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYWATCH_") {
			env = append(env, kv)
		}
	}
	return append(env, settings...)
}

// Tail returns the last n lines of a file (a subprocess's log, for an error message).
func Tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
