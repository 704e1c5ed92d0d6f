package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// engineSettings are the Kafka table engine settings the benchmark gives ClickHouse, in the
// order printed. They follow ClickHouse's guidance for throughput:
//   - kafka_num_consumers: one consumer per partition, but no more than the cores available;
//   - kafka_thread_per_consumer = 1: each consumer flushes its own blocks in parallel instead of
//     squashing all consumers' rows into one stream;
//   - kafka_max_block_size: large blocks (fewer, bigger inserts and parts);
//   - kafka_flush_interval_ms: a block is also flushed after this long, so small tails land fast;
//   - kafka_skip_broken_messages: tolerate malformed messages (keywatch dead-letters them)
//     instead of stopping; there are none here, so it costs nothing.
type engineSettings struct {
	consumers   int
	blockSize   int
	flushMillis int
}

func (s engineSettings) list() []string {
	return []string{
		fmt.Sprintf("kafka_num_consumers=%d", s.consumers),
		"kafka_thread_per_consumer=1",
		fmt.Sprintf("kafka_max_block_size=%d", s.blockSize),
		fmt.Sprintf("kafka_flush_interval_ms=%d", s.flushMillis),
		"kafka_skip_broken_messages=1000",
		"input_format_skip_unknown_fields=1",
	}
}

// createQueue is the Kafka engine table: the event contract's fields, typed so that every valid
// event parses. outcome is empty and status 0 when the event has none.
func createQueue(db, broker, topic, group string, s engineSettings) string {
	return fmt.Sprintf(`CREATE TABLE %s.auth_events_queue
(
    ts         String,
    key_id     String,
    client_id  String,
    outcome    String,
    status     UInt16,
    ip         String,
    user_agent String,
    method     String,
    route      String,
    request_id String,
    gateway    String
)
ENGINE = Kafka
SETTINGS kafka_broker_list = '%s', kafka_topic_list = '%s', kafka_group_name = '%s',
    kafka_format = 'JSONEachRow', %s`, db, broker, topic, group, strings.Join(s.list(), ", "))
}

// viewColumn is one column of auth_events the materialized view fills, and how.
type viewColumn struct{ name, expr string }

// viewColumns convert queued events the way keywatch does: RFC 3339 → DateTime64(3, 'UTC'),
// outcome derived from status when absent, the IP as IPv6 (IPv4 mapped), and where each
// message came from. Columns keywatch's schema gains later are left to their defaults.
var viewColumns = []viewColumn{
	{"ts", "parseDateTime64BestEffort(q.ts, 3, 'UTC')"},
	{"key_id", "q.key_id"},
	{"key_fingerprint", "''"}, // the events carry no raw api_key
	{"client_id", "q.client_id"},
	{"outcome", `if(q.outcome != '', q.outcome,
        multiIf(q.status = 401, 'invalid_key', q.status = 403, 'forbidden', q.status = 429, 'rate_limited',
                q.status >= 500, 'error', 'ok'))`},
	{"status", "q.status"},
	{"ip", "toIPv6OrDefault(q.ip)"},
	{"user_agent", "q.user_agent"},
	{"method", "q.method"},
	{"route", "q.route"},
	{"request_id", "q.request_id"},
	{"gateway", "q.gateway"},
	{"src_topic", "_topic"},
	{"src_partition", "toInt32(_partition)"},
	{"src_offset", "toInt64(_offset)"},
}

// filledColumns returns the viewColumns that db.auth_events has (the schema keeps changing).
func filledColumns(ctx context.Context, ch *chHTTP, db string) ([]viewColumn, error) {
	out, err := ch.query(ctx, "SELECT name FROM system.columns WHERE database = '"+db+"' AND table = 'auth_events'")
	if err != nil {
		return nil, fmt.Errorf("columns of %s.auth_events: %w", db, err)
	}
	have := map[string]bool{}
	for name := range strings.FieldsSeq(out) {
		have[name] = true
	}
	var cols []viewColumn
	for _, c := range viewColumns {
		if have[c.name] {
			cols = append(cols, c)
		}
	}
	if !have["ts"] || !have["request_id"] {
		return nil, fmt.Errorf("%s.auth_events has no ts or request_id column: not keywatch's schema?", db)
	}
	return cols, nil
}

func columnNames(cols []viewColumn) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return names
}

// createView is the materialized view from the Kafka table into db.auth_events.
func createView(db string, cols []viewColumn) string {
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "    " + c.expr + " AS " + c.name
	}
	return fmt.Sprintf("CREATE MATERIALIZED VIEW %[1]s.auth_events_queue_mv TO %[1]s.auth_events AS\nSELECT\n%[2]s\nFROM %[1]s.auth_events_queue AS q",
		db, strings.Join(exprs, ",\n"))
}

type engineRun struct {
	db, broker, topic string
	events            uint64
	timeout           time.Duration
	settings          engineSettings
	columns           []viewColumn
	chPid             int
	chLog             func() string
	progress          time.Duration
}

// runEngine creates the Kafka table and its materialized view, waits until every event is in
// db.auth_events, and drops both again.
func runEngine(ctx context.Context, ch *chHTTP, e engineRun) (phase, error) {
	p := phase{name: "kafka engine", settings: e.settings.list()}
	cleanup := func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, q := range []string{"DROP TABLE IF EXISTS " + e.db + ".auth_events_queue_mv SYNC", "DROP TABLE IF EXISTS " + e.db + ".auth_events_queue SYNC"} {
			if _, err := ch.query(cctx, q); err != nil {
				logf("  cleanup: %v", err)
			}
		}
	}
	defer cleanup()

	chCPU0, _ := cpuSeconds(e.chPid)
	start := time.Now()
	if _, err := ch.query(ctx, createQueue(e.db, e.broker, e.topic, "bench-engine", e.settings)); err != nil {
		return p, fmt.Errorf("create kafka table: %w", err)
	}
	if _, err := ch.query(ctx, createView(e.db, e.columns)); err != nil {
		return p, fmt.Errorf("create materialized view: %w", err)
	}
	var err error
	p.waited, err = waitForRows(ctx, ch, waitSpec{
		table: e.db + ".auth_events", want: e.events, start: start, timeout: e.timeout, label: "kafka engine",
		every: e.progress, status: func() string { return consumerSummary(ctx, ch, e.db) },
	})
	if err != nil {
		return p, fmt.Errorf("%w\n%s", err, engineDiagnostics(ch, e))
	}
	chCPU1, _ := cpuSeconds(e.chPid)
	p.chCPU = chCPU1 - chCPU0
	return p, nil
}

// engineDiagnostics describes the Kafka engine's consumers and ClickHouse's last log lines, for
// when it does not consume.
func engineDiagnostics(ch *chHTTP, e engineRun) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	consumers, err := ch.query(ctx, `SELECT consumer_id, assignments.topic, assignments.partition_id,
		assignments.current_offset, num_messages_read, last_poll_time, num_commits, is_currently_used,
		exceptions.text
		FROM system.kafka_consumers WHERE database = '`+e.db+`' FORMAT Vertical`)
	if err != nil {
		consumers = err.Error()
	}
	return fmt.Sprintf("system.kafka_consumers:\n%s\nClickHouse log (last lines):\n%s", consumers, lastLines(e.chLog(), 30))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// consumerSummary says what the Kafka engine's consumers have done so far.
func consumerSummary(ctx context.Context, ch *chHTTP, db string) string {
	out, err := ch.query(ctx, `SELECT count(), sum(num_messages_read), sum(num_commits), sum(num_rebalance_assignments),
		sum(num_rebalance_revocations), countIf(is_currently_used), sum(length(exceptions.text))
		FROM system.kafka_consumers WHERE database = '`+db+`' FORMAT TSV`)
	if err != nil {
		return err.Error()
	}
	f := strings.Split(out, "\t")
	if len(f) != 7 {
		return out
	}
	return fmt.Sprintf("consumers %s (%s busy), messages read %s, commits %s, rebalances +%s/-%s, exceptions %s", f[0], f[5], f[1], f[2], f[3], f[4], f[6])
}
