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
	"github.com/keywatch/keywatch/app"
)

const revokeDescription = `
Revoke KEY now: ask the key-management system, through the signed revoke webhook (revoke.webhook_url,
contract 3.3), to revoke it, and wait for the answer. --reason is required and is sent and audited.

The request is written to ClickHouse (you are its approver) and the leader of the running
'keywatch run' replicas takes it: it alone counts the hourly cap and sends, so this command and
every replica together send at most revoke.max_per_hour revokes in any hour, each once. Without a
running 'keywatch run' nothing is sent: the request waits for a leader.

The guardrails of automatic revokes apply: a key matching revoke.protected_keys is never revoked
(refused at once), and over revoke.max_per_hour the leader refuses the request. A key in the middle
of a rotation may be revoked by hand (you are its approver); that is audited. Running the same
command again within the same minute is the same request, not a second one. Every decision and
attempt is written to the action_audit table.

The command waits up to --wait for the outcome. Failed deliveries (5xx, 429, network errors) are
retried by the leader with backoff for revoke.retry_for; when --wait ends first, the request stays
with the leader and the command says so. The same revoke is served at POST /v1/keys/KEY/revoke.

Exit status: 0 sent, 3 refused by a guardrail (protected key, hourly cap), 1 on any other error
(unknown key, receiver refused or unreachable, not decided within --wait, ClickHouse unreachable),
2 for bad flags.`

// exitRefused is revoke's exit code for a revoke refused by a guardrail.
const exitRefused = exitCode(3)

func revokeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "revoke [--config FILE] --reason TEXT [--wait D] KEY", revokeDescription, stderr)
	path := configFlag(fs)
	reason := fs.String("reason", "", "why the key is revoked (required; sent to the receiver and audited)")
	wait := fs.Duration("wait", time.Minute, "how long to wait for the leader's outcome (it carries on after)")
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
	log := app.NewLogger(cfg.Log, stderr)
	r := action.New(conn, cfg.Revoke, nil, log)
	actor := "cli"
	if u := os.Getenv("USER"); u != "" {
		actor = "cli:" + u
	}
	st, err := r.Manual(ctx, fs.Arg(0), *reason, actor)
	return follow(ctx, r, st, err, "revoke", fs.Arg(0), *wait, stdout)
}

// follow waits up to wait for the outcome of the action a manual request made (st and err are
// what Manual or ManualRollback returned), and prints it: nil once sent, exitRefused when a
// guardrail refused it. It never sends: the leader of 'keywatch run' does. what names the action
// (revoke, extend_grace...).
func follow(ctx context.Context, r *action.Revoker, st *alerting.ActionStatus, err error, what, key string, wait time.Duration, stdout io.Writer) error {
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, wait)
		got, werr := r.Await(wctx, st.ID)
		cancel()
		if got != nil {
			st = got
		}
		err = werr
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			state := "waits for the leader of 'keywatch run' (is one running?)"
			if st.Status == "queued" {
				state = "stays queued: the leader of 'keywatch run' keeps retrying it for revoke.retry_for"
			}
			return fmt.Errorf("%s of %s (webhook-id %s) not done within --wait %s: %s (%s); it %s", what, key, st.ID, wait, st.Status, st.Detail, state)
		}
	}
	refused := errors.Is(err, action.ErrProtected) || errors.Is(err, action.ErrHourlyCap) ||
		errors.Is(err, action.ErrLeaked) || errors.Is(err, action.ErrNotInRotation)
	switch {
	case refused && st != nil:
		fmt.Fprintf(stdout, "REFUSED %s of %s (%s): %s\n", what, key, st.ID, st.Detail)
		return exitRefused
	case err != nil:
		return err
	case st.Status == "sent":
		fmt.Fprintf(stdout, "SENT %s of %s (webhook-id %s): %s\n", what, key, st.ID, st.Detail)
		return nil
	default:
		return fmt.Errorf("%s of %s (webhook-id %s) %s: %s", what, key, st.ID, st.Status, st.Detail)
	}
}
