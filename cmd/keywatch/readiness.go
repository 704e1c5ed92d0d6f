package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/keywatch/keywatch/detect"
)

const readinessDescription = `
Say whether KEY is safe to retire now: it is safe when no caller still depends on it. A caller is a
client, or an (IP, user agent) pair when the gateway did not resolve a client; it remains while it
has not used the rotation's new key since its last call with KEY, or called KEY within
detect.lingering.quiet_for. The whole rotation is looked back over, so a nightly job is not missed.
The same answer is served at GET /v1/keys/KEY/readiness.

Exit status: 0 safe, 3 unsafe (the remaining callers are printed), 1 when it cannot be answered
(unknown key, ClickHouse unreachable), 2 for bad flags. A rotation pipeline can block on it:
  until keywatch readiness kid_live_old; do sleep 300; done`

// exitUnsafe is readiness's exit code for a key that is not safe to retire.
const exitUnsafe = exitCode(3)

func readinessCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("readiness", "readiness [--config FILE] [--format text|json] [--at TIME] KEY", readinessDescription, stderr)
	path := configFlag(fs)
	format := fs.String("format", "text", "output `format`: text or json")
	at := fs.String("at", "", "answer as of this RFC 3339 `time` instead of now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("want exactly one KEY id (flags go before it), got %d arguments", fs.NArg())}
	}
	key := fs.Arg(0)
	if *format != "text" && *format != "json" {
		return usageError{fmt.Errorf("--format %q: want text or json", *format)}
	}
	now, cfg, conn, err := openForQueries(*path, *at)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := detect.NewLingering(conn, cfg.Detect.Lingering).Readiness(ctx, now, key)
	if err != nil {
		return err
	}
	if *format == "json" {
		if err := printJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		printReadiness(stdout, rep)
	}
	if !rep.Safe {
		return exitUnsafe
	}
	return nil
}

func printReadiness(w io.Writer, rep detect.Readiness) {
	verdict := "SAFE"
	if !rep.Safe {
		verdict = "UNSAFE"
	}
	fmt.Fprintf(w, "%s to retire %s (%s): %s\n", verdict, rep.KeyID, rep.State, rep.Reason)
	if rep.RotationID != "" {
		fmt.Fprintf(w, "rotation %s", rep.RotationID)
		if rep.Deadline != nil {
			fmt.Fprintf(w, ", deadline %s (%s from now)", rep.Deadline.Format(time.RFC3339), rep.Deadline.Sub(rep.CheckedAt).Round(time.Minute))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Remaining) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tREQUESTS\tLAST SEEN\tON NEW KEY")
	for _, c := range rep.Remaining {
		caller := c.ClientID
		if caller == "" {
			caller = c.IP + " " + c.UserAgent
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f%%\n", printable(caller), c.Requests, c.LastSeen.Format(time.RFC3339), 100*c.NewKeyShare)
	}
	if rep.Unlisted > 0 {
		fmt.Fprintf(tw, "... and %d more callers\n", rep.Unlisted)
	}
	_ = tw.Flush()
}

// printable returns s for a terminal: whoever sends requests to the gateway writes client ids
// and user agents, so control and formatting characters (escape sequences, bidi overrides) are
// shown escaped, and a long value is cut.
func printable(s string) string {
	const maxRunes = 120
	if r := []rune(s); len(r) > maxRunes {
		s = string(r[:maxRunes]) + "…"
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
