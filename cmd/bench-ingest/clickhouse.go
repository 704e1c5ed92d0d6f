package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// chHTTP sends queries to ClickHouse's HTTP interface.
type chHTTP struct {
	addr   string
	client *http.Client
}

func newCHHTTP(addr string) *chHTTP {
	return &chHTTP{addr: addr, client: &http.Client{Timeout: 60 * time.Second}}
}

// query runs one statement and returns its output, trimmed.
func (c *chHTTP) query(ctx context.Context, sql string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr+"/", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("clickhouse %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("clickhouse %s: read answer: %w", c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse: %s: %s", firstLine(sql), strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// uint runs a query that returns one unsigned number.
func (c *chHTTP) uint(ctx context.Context, sql string) (uint64, error) {
	out, err := c.query(ctx, sql)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(out, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: %s: answer %q is not a number", firstLine(sql), out)
	}
	return n, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// waited is when rows showed up in a table, measured from the start of a phase.
type waited struct {
	firstRow, lastRow time.Duration
	rows              uint64
}

// waitSpec says what waitForRows waits for and what it checks on every poll.
type waitSpec struct {
	table   string
	want    uint64
	start   time.Time
	timeout time.Duration
	label   string
	// every is how often a progress line is printed.
	every time.Duration
	// check runs on every poll; an error ends the wait (e.g. the process under test died).
	check func() error
	// status adds to the progress line, e.g. the RSS of the process under test.
	status func() string
}

// waitForRows polls count() of the table every 100 ms until it holds want rows, printing a
// progress line every s.every to stderr.
func waitForRows(ctx context.Context, ch *chHTTP, s waitSpec) (waited, error) {
	var w waited
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := s.start.Add(s.timeout)
	lastReport := time.Now()
	for {
		n, err := ch.uint(ctx, "SELECT count() FROM "+s.table)
		if err != nil {
			return w, err
		}
		now := time.Since(s.start)
		w.rows = n
		if n > 0 && w.firstRow == 0 {
			w.firstRow = now
		}
		if n >= s.want {
			w.lastRow = now
			return w, nil
		}
		if s.check != nil {
			if err := s.check(); err != nil {
				return w, err
			}
		}
		if s.every > 0 && time.Since(lastReport) >= s.every {
			lastReport = time.Now()
			line := fmt.Sprintf("  [%s %5.1fs] %s of %s rows", s.label, now.Seconds(), thousands(n), thousands(s.want))
			if s.status != nil {
				line += ", " + s.status()
			}
			logf("%s", line)
		}
		if time.Now().After(deadline) {
			return w, fmt.Errorf("%s: %s holds %d of %d rows after %s", s.label, s.table, n, s.want, s.timeout)
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-tick.C:
		}
	}
}

// waitForMerges waits (at most limit) until the server runs no merges, so that one phase's
// background work does not slow the next one down.
func waitForMerges(ctx context.Context, ch *chHTTP, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		n, err := ch.uint(ctx, "SELECT count() FROM system.merges")
		if err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	logf("  merges still running after %s; going on", limit)
}

// tableCheck is what a database's auth_events holds once a phase is done.
type tableCheck struct {
	db                    string
	rows, requestIDs      uint64
	rollupRequests        uint64
	deadLetters           uint64
	checksum              string
	deadLettersApplicable bool
}

// checkTable counts rows, distinct request ids and rollup requests of db, and computes a
// checksum over columns to compare two databases row for row.
func checkTable(ctx context.Context, ch *chHTTP, db string, columns []string, withDeadLetters bool) (tableCheck, error) {
	t := tableCheck{db: db, deadLettersApplicable: withDeadLetters}
	out, err := ch.query(ctx, fmt.Sprintf(`SELECT count(), uniqExact(request_id), sum(cityHash64(%s))
		FROM %s.auth_events FORMAT TSV`, strings.Join(columns, ", "), db))
	if err != nil {
		return t, err
	}
	f := strings.Fields(out)
	if len(f) != 3 {
		return t, fmt.Errorf("check %s.auth_events: unexpected answer %q", db, out)
	}
	t.rows, _ = strconv.ParseUint(f[0], 10, 64)
	t.requestIDs, _ = strconv.ParseUint(f[1], 10, 64)
	t.checksum = f[2]
	if t.rollupRequests, err = ch.uint(ctx, "SELECT sum(requests) FROM "+db+".key_minutes"); err != nil {
		return t, err
	}
	if withDeadLetters {
		if t.deadLetters, err = ch.uint(ctx, "SELECT count() FROM "+db+".dead_letters"); err != nil {
			return t, err
		}
	}
	return t, nil
}

// problems lists how t differs from n stored events, one line each.
func (t tableCheck) problems(n uint64) []string {
	var out []string
	if t.rows != n {
		out = append(out, fmt.Sprintf("%s.auth_events holds %d rows, want %d", t.db, t.rows, n))
	}
	if t.requestIDs != n {
		out = append(out, fmt.Sprintf("%s.auth_events holds %d distinct request_id, want %d", t.db, t.requestIDs, n))
	}
	if t.rollupRequests != n {
		out = append(out, fmt.Sprintf("%s.key_minutes counts %d requests, want %d", t.db, t.rollupRequests, n))
	}
	if t.deadLettersApplicable && t.deadLetters != 0 {
		out = append(out, fmt.Sprintf("%s.dead_letters holds %d messages, want 0", t.db, t.deadLetters))
	}
	return out
}
