package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keywatch/keywatch/app"
	"github.com/keywatch/keywatch/detect"
	"github.com/keywatch/keywatch/finding"
)

const detectDescription = `
Run every detector (or those named by --detectors) once, now, against the configured ClickHouse,
and print the findings, most severe first, as a table or as JSON (one object per run, with its
findings and evidence). Findings are printed, not stored: 'keywatch run' stores the findings of its
scheduled runs for alerting. The schema must exist ('keywatch migrate').

Exit status: 0 when every detector ran (whatever it found), 1 when one failed, 2 for bad flags.`

func detectCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("detect", "detect --once [--config FILE] [--detectors a,b] [--format table|json] [--at TIME]", detectDescription, stderr)
	path := configFlag(fs)
	once := fs.Bool("once", false, "run the detectors once and exit (required: 'keywatch run' schedules them)")
	names := fs.String("detectors", "", "comma-separated `names` to run (lingering, spike, leak, hygiene); default all")
	format := fs.String("format", "table", "output `format`: table or json")
	at := fs.String("at", "", "judge as of this RFC 3339 `time` instead of now (replaying a past moment)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !*once {
		return usageError{errors.New("--once is required (the daemon, 'keywatch run', runs detectors on their schedules)")}
	}
	if *format != "table" && *format != "json" {
		return usageError{fmt.Errorf("--format %q: want table or json", *format)}
	}
	now, cfg, conn, err := openForQueries(*path, *at)
	if err != nil {
		return err
	}
	defer conn.Close()
	var selected []string
	for n := range strings.SplitSeq(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			selected = append(selected, n)
		}
	}
	engine := detect.NewEngine(detect.All(conn, cfg.Detect), nil, nil, app.NewLogger(cfg.Log, stderr))
	runs, runErr := engine.RunOnce(ctx, now, selected...)
	if runs == nil && runErr != nil {
		return usageError{runErr} // an unknown detector name
	}
	if *format == "json" {
		if err := printRunsJSON(stdout, runs); err != nil {
			return err
		}
	} else {
		printFindingsTable(stdout, runs)
	}
	return runErr
}

func printRunsJSON(w io.Writer, runs []finding.Run) error {
	type runJSON struct {
		Detector string            `json:"detector"`
		Seconds  float64           `json:"seconds"`
		Error    string            `json:"error,omitempty"`
		Findings []finding.Finding `json:"findings"`
	}
	out := make([]runJSON, len(runs))
	for i, r := range runs {
		out[i] = runJSON{Detector: r.Detector, Seconds: r.Finished.Sub(r.Started).Seconds(), Findings: r.Findings}
		if out[i].Findings == nil {
			out[i].Findings = []finding.Finding{}
		}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
	}
	return printJSON(w, out)
}

func printFindingsTable(w io.Writer, runs []finding.Run) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tSCORE\tDETECTOR\tKEY\tCLIENT\tSUMMARY")
	for _, r := range runs {
		for _, f := range r.Findings {
			fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\t%s\n", f.Severity, f.Score, f.Detector, f.KeyID, f.ClientID, f.Summary)
		}
	}
	_ = tw.Flush()
	for _, r := range runs {
		status := fmt.Sprintf("%d findings", len(r.Findings))
		if r.Err != nil {
			status = "failed: " + r.Err.Error()
		}
		fmt.Fprintf(w, "# %s: %s in %s\n", r.Detector, status, r.Finished.Sub(r.Started).Round(time.Millisecond))
	}
}
