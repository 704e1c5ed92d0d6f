package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keywatch/keywatch/action"
	"github.com/keywatch/keywatch/alerting"
)

const revokeDescription = `
Revoke KEY now: ask the key-management system, through the signed revoke webhook (revoke.webhook_url,
contract 3.3), to revoke it, and wait for the answer. --reason is required and is sent and audited.

The guardrails of automatic revokes apply: a key matching revoke.protected_keys is never revoked,
and at most revoke.max_per_hour revokes are sent in any hour (counted across every keywatch over
the same ClickHouse). A key in the middle of a rotation may be revoked by hand (you are its
approver); that is audited. Running the same command again within the same minute is the same
request, not a second one. Every decision and attempt is written to the action_audit table.

Failed deliveries (5xx, 429, network errors) are retried with backoff for up to --wait; if still not
delivered, the action stays queued and a running 'keywatch run' keeps retrying it for
revoke.retry_for. The same revoke is served at POST /v1/keys/KEY/revoke.

Exit status: 0 sent, 3 refused by a guardrail (protected key, hourly cap), 1 on any other error
(unknown key, receiver refused or unreachable, ClickHouse unreachable), 2 for bad flags.`

// exitRefused is revoke's exit code for a revoke refused by a guardrail.
const exitRefused = exitCode(3)

func revokeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "revoke [--config FILE] --reason TEXT [--wait D] KEY", revokeDescription, stderr)
	path := configFlag(fs)
	reason := fs.String("reason", "", "why the key is revoked (required; sent to the receiver and audited)")
	wait := fs.Duration("wait", time.Minute, "how long to keep retrying a failed delivery before leaving it to the daemon")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("want exactly one KEY id (flags go before it), got %d arguments", fs.NArg())}
	}
	if *reason == "" {
		return usageError{errors.New("--reason is required")}
	}
	_, cfg, conn, err := openForQueries(*path, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	log := newLogger(cfg.Log, stderr)
	r := action.New(conn, cfg.Revoke, nil, log)
	actor := "cli"
	if u := os.Getenv("USER"); u != "" {
		actor = "cli:" + u
	}
	st, err := r.Manual(ctx, fs.Arg(0), *reason, actor)
	if errors.Is(err, action.ErrProtected) || errors.Is(err, action.ErrHourlyCap) {
		fmt.Fprintf(stdout, "REFUSED revoke of %s (%s): %s\n", fs.Arg(0), st.ID, st.Detail)
		return exitRefused
	}
	if err != nil {
		return err
	}
	return deliver(ctx, r, st, "revoke", fs.Arg(0), *wait, stdout)
}

// deliver sends a queued action now, waiting up to wait, and prints the outcome: nil once sent; an
// action still queued is left for 'keywatch run'. what names the action (revoke, extend_grace...).
func deliver(ctx context.Context, r *action.Revoker, st *alerting.ActionStatus, what, key string, wait time.Duration, stdout io.Writer) error {
	if st.Status == "queued" {
		wctx, cancel := context.WithTimeout(ctx, wait)
		sent, err := r.SendNow(wctx, st.ID)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if sent != nil {
			st = sent
		}
	}
	switch st.Status {
	case "sent":
		fmt.Fprintf(stdout, "SENT %s of %s (webhook-id %s): %s\n", what, key, st.ID, st.Detail)
		return nil
	case "queued":
		return fmt.Errorf("%s of %s (webhook-id %s) not delivered within --wait %s: %s; it stays queued for 'keywatch run'", what, key, st.ID, wait, st.Detail)
	default:
		return fmt.Errorf("%s of %s (webhook-id %s) %s: %s", what, key, st.ID, st.Status, st.Detail)
	}
}
