package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

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

With --wait, a rotation pipeline blocks on it: the question is asked again every --poll until the
answer is safe or gone, or --wait has passed. A failed answer (ClickHouse unreachable) is asked
again at the next poll; an unknown key ends the wait at once.

Exit status: 0 safe or gone; 3 unsafe (at the end of --wait, if given; the remaining callers are
printed); 1 when it cannot be answered (unknown key; ClickHouse unreachable, at the end of --wait if
given); 2 for bad flags. Flags may come before or after KEY:
  keywatch readiness kid_live_old --wait 2h --poll 1m`

// exitUnsafe is readiness's exit code for a key that is not safe to retire.
const exitUnsafe = exitCode(3)

// minPoll is the shortest --poll: each answer reads the whole rotation back.
const minPoll = time.Second

func readinessCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("readiness", "readiness [--config FILE] [--format text|json] [--at TIME | --wait DURATION [--poll DURATION]] KEY", readinessDescription, stderr)
	path := configFlag(fs)
	format := fs.String("format", "text", "output `format`: text or json")
	at := fs.String("at", "", "answer as of this RFC 3339 `time` instead of now")
	wait := fs.Duration("wait", 0, "ask again until safe or this `duration` has passed (e.g. 2h); 0: answer once")
	poll := fs.Duration("poll", time.Minute, "with --wait, how often to ask (`duration`, at least 1s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var key string
	if fs.NArg() > 0 { // flags after KEY: parse the rest
		key = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageError{fmt.Errorf("want exactly one KEY id, got %q and %q", key, fs.Arg(0))}
		}
	}
	switch {
	case key == "":
		return usageError{errors.New("want a KEY id")}
	case *format != "text" && *format != "json":
		return usageError{fmt.Errorf("--format %q: want text or json", *format)}
	case *wait < 0:
		return usageError{fmt.Errorf("--wait %s: want 0 or more", *wait)}
	case *wait > 0 && *at != "":
		return usageError{errors.New("--wait asks again as time passes; it cannot be combined with --at")}
	case *wait > 0 && *poll < minPoll:
		return usageError{fmt.Errorf("--poll %s: want at least %s", *poll, minPoll)}
	}
	now, cfg, conn, err := openForQueries(*path, *at)
	if err != nil {
		return err
	}
	defer conn.Close()
	gate := detect.NewLingering(conn, cfg.Detect.Lingering)
	ask := func() (detect.Readiness, error) {
		if *at == "" {
			now = time.Now().UTC()
		}
		return gate.Readiness(ctx, now, key)
	}
	rep, err := waitForReadiness(ctx, ask, *wait, *poll, stderr)
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

// waitForReadiness asks until the answer is safe (or gone), wait has passed, or the key is
// unknown, and returns the last answer, or the last error when the last ask failed. With wait 0 it
// asks once. Each unsafe or failed answer before the end is one line on progress.
func waitForReadiness(ctx context.Context, ask func() (detect.Readiness, error), wait, poll time.Duration, progress io.Writer) (detect.Readiness, error) {
	deadline := time.Now().Add(wait)
	for {
		rep, err := ask()
		if errors.Is(err, detect.ErrUnknownKey) || (err == nil && rep.Safe) {
			return rep, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return rep, err
		}
		next := min(poll, left)
		if err != nil {
			fmt.Fprintf(progress, "readiness: cannot tell (%v); asking again in %s\n", err, next.Round(time.Second))
		} else {
			fmt.Fprintf(progress, "readiness: %s is unsafe to retire, %d callers remain; asking again in %s (%s left)\n",
				rep.KeyID, len(rep.Remaining)+rep.Unlisted, next.Round(time.Second), left.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("readiness: stopped waiting: %w", ctx.Err())
		case <-time.After(next):
		}
	}
}
