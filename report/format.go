package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats are the output formats Write knows.
var Formats = []string{"table", "csv", "json"}

// Column is one field of the report: its CSV/JSON name, its table heading and what it means.
type Column struct {
	Name, Heading, Help string
	csv, table          func(Row) string
}

// Columns are the report's fields in CSV order (the JSON objects carry the same names). A column
// without a table heading is left out of the table.
var Columns = []Column{
	{"key_id", "KEY", "the key id", func(r Row) string { return r.KeyID }, func(r Row) string { return r.KeyID }},
	{"client_id", "CLIENT", "the client holding the key", func(r Row) string { return r.ClientID }, func(r Row) string { return dash(r.ClientID) }},
	{"state", "STATE", "active, retiring (a rotation started), retired or revoked, at the end of the window",
		func(r Row) string { return r.State }, func(r Row) string { return r.State }},
	{"created_at", "CREATED", "when the key was created (key.created, or the rotation that introduced it); empty when unknown",
		func(r Row) string { return csvTime(r.CreatedAt) }, func(r Row) string { return tableTime(r.CreatedAt) }},
	{"age_seconds", "AGE", "the key's age: from its creation to the end of the window, or to its retirement or revocation if that came first",
		func(r Row) string { return csvInt(r.AgeSeconds) }, func(r Row) string { return tableDuration(r.AgeSeconds) }},
	{"version", "", "the key's version, as its lifecycle events last stated it",
		func(r Row) string { return r.Version }, nil},
	{"expires_at", "EXPIRES", "when the key expires, as its lifecycle events last stated it; empty when none did",
		func(r Row) string { return csvTime(r.ExpiresAt) }, func(r Row) string { return tableTime(r.ExpiresAt) }},
	{"last_rotation_at", "LAST ROTATION", "when the latest rotation retiring this key started (key.rotation_started); empty when none did",
		func(r Row) string { return csvTime(r.LastRotationAt) }, func(r Row) string { return tableTime(r.LastRotationAt) }},
	{"rotation_id", "", "that rotation, as old>new key id",
		func(r Row) string { return r.RotationID }, nil},
	{"retired_at", "RETIRED", "when that rotation retired (key.retired) or revoked (key.revoked) the key; empty while it runs",
		func(r Row) string { return csvTime(r.RetiredAt) }, func(r Row) string { return tableTime(r.RetiredAt) }},
	{"rotation_took_seconds", "TOOK", "how long that rotation took: from its start to the retirement or revocation",
		func(r Row) string { return csvInt(r.RotationTookSeconds) }, func(r Row) string { return tableDuration(r.RotationTookSeconds) }},
	{"rotations_completed", "ROTATIONS", "rotations of this key (as the old key) that retired or revoked it within the window",
		func(r Row) string { return strconv.Itoa(r.RotationsCompleted) }, func(r Row) string { return strconv.Itoa(r.RotationsCompleted) }},
	{"stragglers_at_retirement", "STRAGGLERS", "callers still on the key when it was retired: callers that used it after its rotation " +
		"started and, at the retirement, had not moved to the new key since their last call with it, or had called it within " +
		"detect.lingering.quiet_for before (a caller still calling it after the retirement is one); from key_caller_hours, to the " +
		"hour; empty while the rotation runs",
		func(r Row) string { return csvIntP(r.StragglersAtRetirement) }, tableStragglers},
	{"stragglers", "", "those callers (a client id, or \"IP (user agent)\" when the gateway resolved no client), latest first; " +
		"\"; \"-separated in CSV, an array in JSON",
		func(r Row) string { return strings.Join(r.Stragglers, "; ") }, nil},
	{"emergency_revokes", "REVOKES", "revocations within the window: revoke webhooks keywatch sent (automatic, approved or by hand) and " +
		"key.revoked lifecycle events not preceded by one of those (a revoke made in the key-management system)",
		func(r Row) string { return strconv.Itoa(r.EmergencyRevokes) }, func(r Row) string { return strconv.Itoa(r.EmergencyRevokes) }},
	{"rollbacks", "ROLLBACKS", "rollbacks within the window: extend_grace and reactivate webhooks keywatch sent for the key",
		func(r Row) string { return strconv.Itoa(r.Rollbacks) }, func(r Row) string { return strconv.Itoa(r.Rollbacks) }},
}

// Write prints rows in format (table, csv or json). The table starts with a line naming the window
// and ends with a summary line; CSV has a header line; JSON is an array of objects.
func Write(w io.Writer, format string, rows []Row, opts Options) error {
	var err error
	switch format {
	case "table":
		err = writeTable(w, rows, opts)
	case "csv":
		err = writeCSV(w, rows)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []Row{}
		}
		err = enc.Encode(rows)
	default:
		return fmt.Errorf("report: format %q: want one of %s", format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return fmt.Errorf("report: write %s: %w", format, err)
	}
	return nil
}

func writeCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	record := make([]string, len(Columns))
	for i, c := range Columns {
		record[i] = c.Name
	}
	if err := cw.Write(record); err != nil {
		return err
	}
	for _, r := range rows {
		for i, c := range Columns {
			record[i] = c.csv(r)
		}
		if err := cw.Write(record); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeTable(w io.Writer, rows []Row, opts Options) error {
	fmt.Fprintf(w, "Rotations from %s to %s (UTC)\n\n", opts.Since.UTC().Format(time.RFC3339), opts.Until.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	var cells []string
	for _, c := range Columns {
		if c.table != nil {
			cells = append(cells, c.Heading)
		}
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
	var completed, stragglers, revokes, rollbacks int
	for _, r := range rows {
		cells = cells[:0]
		for _, c := range Columns {
			if c.table != nil {
				cells = append(cells, c.table(r))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		completed += r.RotationsCompleted
		if r.StragglersAtRetirement != nil && *r.StragglersAtRetirement > 0 {
			stragglers++
		}
		revokes += r.EmergencyRevokes
		rollbacks += r.Rollbacks
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s, %s completed, %s retired with stragglers, %s, %s\n",
		plural(len(rows), "key"), plural(completed, "rotation"), plural(stragglers, "key"),
		plural(revokes, "emergency revoke"), plural(rollbacks, "rollback"))
	return err
}

func tableStragglers(r Row) string {
	if r.StragglersAtRetirement == nil {
		return "-"
	}
	n := *r.StragglersAtRetirement
	if n == 0 {
		return "0"
	}
	names := r.Stragglers
	more := ""
	if len(names) > 3 {
		names, more = names[:3], fmt.Sprintf(", +%d", len(r.Stragglers)-3)
	}
	return fmt.Sprintf("%d: %s%s", n, strings.Join(names, ", "), more)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func tableTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func csvInt(n *int64) string {
	if n == nil {
		return ""
	}
	return strconv.FormatInt(*n, 10)
}

func csvIntP(n *int) string {
	if n == nil {
		return ""
	}
	return strconv.Itoa(*n)
}

// tableDuration writes seconds as days and hours (3d4h), or hours and minutes under a day (4h12m),
// or minutes under an hour (12m).
func tableDuration(s *int64) string {
	if s == nil {
		return "-"
	}
	d := time.Duration(*s) * time.Second
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	switch days := int64(d / (24 * time.Hour)); {
	case days > 0:
		return fmt.Sprintf("%s%dd%dh", neg, days, int64(d%(24*time.Hour)/time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%s%dh%dm", neg, int64(d/time.Hour), int64(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%s%dm", neg, int64(d/time.Minute))
}
