package main

import (
	"context"
	"fmt"
	"io"

	"github.com/keywatch/keywatch/detect"
)

const readinessDescription = `
Say whether KEY is safe to retire now: it is safe when no caller still depends on it. A caller is a
client, or an (IP, user agent) pair when the gateway did not resolve a client; a client depends on
KEY while any of its (IP, user agent) pairs does. A pair depends on KEY when a request of it
succeeded since the rotation started and it has not been quiet on KEY for as long as its own rhythm
needs: detect.lingering.cadence_factor times its usual gap between active hours (a daily job needs
more than a day), at least detect.lingering.quiet_for, and at most the grace period once it was
seen on a later key. Use of the rotation's new key or any later key of its chain counts as moved. Refused requests are not use: a
caller whose every request was refused is listed apart and does not block. The whole rotation is
looked back over, so a nightly job is not missed. The same answer is served at
GET /v1/keys/KEY/readiness.

The verdict is SAFE, UNSAFE, or GONE: KEY is already retired or revoked and nothing succeeded
with it since (refused attempts may be listed); there is nothing left to retire.

Exit status: 0 safe or gone, 3 unsafe (the remaining callers are printed), 1 when it cannot be
answered (unknown key, ClickHouse unreachable), 2 for bad flags. A rotation pipeline can block on it:
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
		detect.WriteReadiness(stdout, rep)
	}
	if !rep.Safe {
		return exitUnsafe // gone is safe: exit 0
	}
	return nil
}
