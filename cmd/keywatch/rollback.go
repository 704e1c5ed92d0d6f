package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/app"
)

const rollbackDescription = `
Roll back KEY now: ask the key-management system, through the signed webhook (revoke.webhook_url
and its secret, Standard Webhooks), to extend the key's grace period (--extend D: the new deadline
is the later of the key's current grace deadline and now, plus D; the body says
"action":"extend_grace" and carries grace_until) or to reactivate it (--reactivate, body
"action":"reactivate"). Use it when retiring or revoking a key broke a client.

Only the old key of a rotation (one a key.rotation_started event names) can be rolled back; any
other key is refused (guardrail not_in_rotation). A key keywatch considers leaked is never rolled
back: one with an open (pending or firing) leak or leak_report alert, or a leak-like finding within
rollback.leak_lookback. Refusals are audited. Running the same command again within the same
minute is the same request, not a second one. Every decision and attempt is written to the
action_audit table (mode manual, actor cli:$USER).

The rollback is queued in ClickHouse and the leader of the running 'keywatch run' replicas sends
it (it alone sends, so it is sent once); without a running 'keywatch run' nothing is sent. The
command waits up to --wait for the outcome; failed deliveries (5xx, 429, network errors) are
retried by the leader with backoff for revoke.retry_for. The same rollback is served at
POST /v1/keys/KEY/rollback.

Exit status: 0 sent, 3 refused (the key is in no rotation, or considered leaked), 1 on any other
error (unknown key, receiver refused or unreachable, not sent within --wait, ClickHouse
unreachable), 2 for bad flags.`

func rollbackCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rollback", "rollback [--config FILE] (--extend D | --reactivate) [--reason TEXT] [--wait D] KEY", rollbackDescription, stderr)
	path := configFlag(fs)
	extend := fs.Duration("extend", 0, "extend the key's grace period by this long (e.g. 24h)")
	reactivate := fs.Bool("reactivate", false, "reactivate the key instead")
	reason := fs.String("reason", "", "why (sent to the receiver and audited; default: manual rollback by the user)")
	wait := fs.Duration("wait", time.Minute, "how long to wait for the leader's outcome (it carries on after)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("want exactly one KEY id (flags go before it), got %d arguments", fs.NArg())}
	}
	extendSet := false
	fs.Visit(func(f *flag.Flag) { extendSet = extendSet || f.Name == "extend" })
	switch {
	case *reactivate && extendSet:
		return usageError{errors.New("--extend and --reactivate exclude each other")}
	case !*reactivate && !extendSet:
		return usageError{errors.New("say what to do: --extend D (e.g. 24h) or --reactivate")}
	case extendSet && *extend <= 0:
		return usageError{fmt.Errorf("--extend %s: want a positive duration", *extend)}
	}
	kind := action.KindExtendGrace
	if *reactivate {
		kind = action.KindReactivate
	}
	_, cfg, conn, err := openForQueries(*path, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	log := app.NewLogger(cfg.Log, stderr)
	r := action.New(conn, cfg.Revoke, nil, log).WithRollback(cfg.Rollback)
	actor := "cli"
	if u := os.Getenv("USER"); u != "" {
		actor = "cli:" + u
	}
	key := fs.Arg(0)
	st, err := r.ManualRollback(ctx, key, kind, *extend, *reason, actor)
	return follow(ctx, r, st, err, kind, key, *wait, stdout)
}
