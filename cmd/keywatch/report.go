package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keywatch/keywatch/report"
)

const reportDescription = `
Print the rotation compliance report: for every key with lifecycle events that lived within the
window (created by its end, not retired or revoked before its start), its age, its last rotation,
how long that took, the callers still on it when it was retired, and the emergency revokes and
rollbacks within the window: the evidence an auditor asks for under a key-rotation policy.

The window is the --since before --at (default now). --format table is aligned for reading, with a
summary line; csv has a header line and RFC 3339 times in UTC, durations in seconds; json is an
array of objects with the same field names as the CSV header (times RFC 3339, null when absent).
Rows are ordered by client, creation time and key id.

Columns (CSV header / JSON field, table heading):
%s
Exit status: 0 printed, 1 on an error (ClickHouse unreachable), 2 for bad flags.`

func reportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report rotations", "report rotations [--config FILE] [--since D] [--format table|csv|json] [--at TIME]",
		fmt.Sprintf(reportDescription, columnsHelp()), stderr)
	path := configFlag(fs)
	since := fs.String("since", "90d", "the window: this long before --at; a Go duration or whole days (`90d`, 36h, 1d12h)")
	format := fs.String("format", "table", "output `format`: "+strings.Join(report.Formats, ", "))
	at := fs.String("at", "", "end the window at this RFC 3339 `time` instead of now")
	switch {
	case len(args) > 0 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]):
		fs.Usage()
		return flag.ErrHelp
	case len(args) == 0:
		fs.Usage()
		return usageError{errors.New("want the report to print: rotations")}
	case args[0] != "rotations":
		return usageError{fmt.Errorf("unknown report %q: want rotations", args[0])}
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	window, err := parseSince(*since)
	if err != nil {
		return usageError{fmt.Errorf("--since: %w", err)}
	}
	if !slices.Contains(report.Formats, *format) {
		return usageError{fmt.Errorf("--format %q: want one of %s", *format, strings.Join(report.Formats, ", "))}
	}
	now, cfg, conn, err := openForQueries(*path, *at)
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := report.Options{Since: now.Add(-window), Until: now, QuietFor: time.Duration(cfg.Detect.Lingering.QuietFor)}
	rows, err := report.Rotations(ctx, conn, opts)
	if err != nil {
		return err
	}
	return report.Write(stdout, *format, rows, opts)
}

var daysPrefix = regexp.MustCompile(`^(\d+)d(.*)$`)

// parseSince reads a positive Go duration, optionally led by whole days: 90d, 36h, 1d12h.
func parseSince(s string) (time.Duration, error) {
	var d time.Duration
	rest := s
	if m := daysPrefix.FindStringSubmatch(s); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100000 {
			return 0, fmt.Errorf("%q: too many days", s)
		}
		d, rest = time.Duration(days)*24*time.Hour, m[2]
	}
	if rest != "" {
		more, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration like 90d, 36h or 1d12h", s)
		}
		d += more
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return d, nil
}

// columnsHelp lists the report's columns for --help, each help text wrapped under its name.
func columnsHelp() string {
	var b strings.Builder
	for _, c := range report.Columns {
		name := c.Name
		if c.Heading != "" {
			name += " (" + c.Heading + ")"
		} else {
			name += " (not in the table)"
		}
		fmt.Fprintf(&b, "  %s\n", name)
		line := "     "
		for _, w := range strings.Fields(c.Help) {
			if len(line)+1+len(w) > 100 && strings.TrimSpace(line) != "" {
				b.WriteString(line + "\n")
				line = "     "
			}
			line += " " + w
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
