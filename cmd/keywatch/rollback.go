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
)

const rollbackDescription = `
Roll back KEY now: ask the key-management system, through the signed webhook (revoke.webhook_url
and its secret, Standard Webhooks), to extend the key's grace period (--extend D: the new deadline
is the later of the key's current grace deadline and now, plus D; the body says
"action":"extend_grace" and carries grace_until) or to reactivate it (--reactivate, body
"action":"reactivate"). Use it when retiring or revoking a key broke a client.

A key keywatch considers leaked is never rolled back: one with an open (pending or firing) leak or
leak_report alert, or a leak-like finding within rollback.leak_lookback. The refusal is audited.
Running the same command again within the same minute is the same request, not a second one. Every
decision and attempt is written to the action_audit table (mode manual, actor cli:$USER).

Failed deliveries (5xx, 429, network errors) are retried with backoff for up to --wait; if still not
delivered, the action stays queued and a running 'keywatch run' keeps retrying it for
revoke.retry_for. The same rollback is served at POST /v1/keys/KEY/rollback.

Exit status: 0 sent, 3 refused (the key is considered leaked), 1 on any other error (unknown key,
receiver refused or unreachable, ClickHouse unreachable), 2 for bad flags.`

func rollbackCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rollback", "rollback [--config FILE] (--extend D | --reactivate) [--reason TEXT] [--wait D] KEY", rollbackDescription, stderr)
	path := configFlag(fs)
	extend := fs.Duration("extend", 0, "extend the key's grace period by this long (e.g. 24h)")
	reactivate := fs.Bool("reactivate", false, "reactivate the key instead")
	reason := fs.String("reason", "", "why (sent to the receiver and audited; default: manual rollback by the user)")
	wait := fs.Duration("wait", time.Minute, "how long to keep retrying a failed delivery before leaving it to the daemon")
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
	log := newLogger(cfg.Log, stderr)
	r := action.New(conn, cfg.Revoke, nil, log).WithRollback(cfg.Rollback)
	actor := "cli"
	if u := os.Getenv("USER"); u != "" {
		actor = "cli:" + u
	}
	key := fs.Arg(0)
	st, err := r.ManualRollback(ctx, key, kind, *extend, *reason, actor)
	if errors.Is(err, action.ErrLeaked) {
		fmt.Fprintf(stdout, "REFUSED %s of %s (%s): %s\n", kind, key, st.ID, st.Detail)
		return exitRefused
	}
	if err != nil {
		return err
	}
	return deliver(ctx, r, st, kind, key, *wait, stdout)
}
