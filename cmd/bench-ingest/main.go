// Command bench-ingest measures how fast keywatch moves authentication events from Kafka into
// ClickHouse, next to ClickHouse's own Kafka table engine doing the same on the same server.
// See `go run ./cmd/bench-ingest --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/keywatch/keywatch/ingest"
	"github.com/keywatch/keywatch/internal/benchmark"
	"github.com/keywatch/keywatch/internal/config"
	"github.com/keywatch/keywatch/internal/schema"
	"github.com/keywatch/keywatch/internal/testbed"
)

const description = `bench-ingest measures keywatch's ingest throughput against ClickHouse's own Kafka table engine.

In one process it starts a real ClickHouse server (the embedded libchdb.so) and an in-process
Kafka broker, produces --events realistic authentication events (~400 bytes of JSON each, the
event contract plus fields keywatch ignores) to the topic auth-events, and creates two databases
with keywatch's schema ('keywatch migrate'). Then, one after the other, never together:

  keywatch      'keywatch run' (the binary given by --keywatch) consumes the topic as a fresh
                consumer group into database kw. Measured: wall time from process start until
                count() of kw.auth_events reaches --events (polled every 100 ms), and from the
                first row visible (start-up aside); events per second; peak RSS (VmHWM) and CPU
                seconds per million events of the keywatch process, read just before SIGTERM;
                the CPU ClickHouse spent meanwhile.
  kafka engine  a Kafka engine table with its own consumer group and a materialized view that
                converts like keywatch does, into database engine, where ClickHouse's own
                materialized views on auth_events fill the same rollups keywatch fills
                (ingest.CreateRollupViews): what a team would build with ClickHouse alone.
                Measured: wall time from CREATE until count() of engine.auth_events reaches
                --events; the CPU ClickHouse spent meanwhile.

Finally both databases are checked: exactly --events rows, as many distinct request_id, the
per-minute rollup counting every event, the same checksum over the columns the engine's view
fills, and every rollup equal group by group and value by value (ingest.CompareRollups). A failed
check prints a WARNING line and exits 1.

Usage: go run ./cmd/bench-ingest --keywatch ./bin/keywatch [flags]

Flags:`

type options struct {
	keywatch    string
	events      int
	partitions  int
	producers   int
	timeout     time.Duration
	only        string
	seed        uint64
	progress    time.Duration
	engine      engineSettings
	keywatchEnv stringList
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() { benchmark.Main("bench-ingest", parseFlags, run) }

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench-ingest", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), description)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.keywatch, "keywatch", "", "path of the keywatch `binary` to measure (required), e.g. ./bin/keywatch")
	fs.IntVar(&o.events, "events", 2_000_000, "number of authentication events to produce and ingest")
	fs.IntVar(&o.partitions, "partitions", 4, "partitions of the auth-events topic")
	fs.IntVar(&o.producers, "producers", 4, "parallel kafka-go writers producing the events")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long each ingest path may take to store every event")
	fs.StringVar(&o.only, "only", "both", "which ingest path to measure: keywatch, engine or both")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the simulated traffic")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "how often to print a progress line to stderr while waiting (0: never)")
	fs.IntVar(&o.engine.consumers, "engine-consumers", 0, "kafka_num_consumers of the Kafka engine (0: min(partitions, CPU cores))")
	fs.IntVar(&o.engine.blockSize, "engine-block-size", 1_048_576, "kafka_max_block_size of the Kafka engine (rows per block)")
	fs.IntVar(&o.engine.flushMillis, "engine-flush-ms", 500, "kafka_flush_interval_ms of the Kafka engine")
	fs.Var(&o.keywatchEnv, "keywatch-env", "extra `KEYWATCH_X=value` setting for 'keywatch run' (repeatable), e.g. KEYWATCH_INGEST_BATCH_MAX_ROWS=100000")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.keywatch == "":
		return o, errors.New("--keywatch is required: the keywatch binary to measure (make build writes ./bin/keywatch)")
	case o.events < 1:
		return o, errors.New("--events must be at least 1")
	case o.partitions < 1 || o.producers < 1:
		return o, errors.New("--partitions and --producers must be at least 1")
	case o.only != "both" && o.only != "keywatch" && o.only != "engine":
		return o, fmt.Errorf("--only %q: want keywatch, engine or both", o.only)
	}
	for _, kv := range o.keywatchEnv {
		if !strings.HasPrefix(kv, "KEYWATCH_") || !strings.Contains(kv, "=") {
			return o, fmt.Errorf("--keywatch-env %q: want KEYWATCH_NAME=value", kv)
		}
	}
	if o.engine.consumers == 0 {
		o.engine.consumers = min(o.partitions, runtime.NumCPU())
	}
	bin, err := exec.LookPath(o.keywatch)
	if err != nil {
		return o, fmt.Errorf("--keywatch %s: %w", o.keywatch, err)
	}
	if o.keywatch, err = filepath.Abs(bin); err != nil {
		return o, err
	}
	return o, nil
}

const (
	authTopic      = "auth-events"
	lifecycleTopic = "key-lifecycle"
	keywatchDB     = "kw"
	engineDB       = "engine"
)

// run sets up ClickHouse and Kafka, produces the events, measures the selected ingest paths,
// prints the report and returns whether every check passed.
func run(ctx context.Context, o options) (bool, error) {
	work, err := os.MkdirTemp("", "bench-ingest-")
	if err != nil {
		return false, fmt.Errorf("work folder: %w", err)
	}
	defer os.RemoveAll(work)

	logf("starting ClickHouse and the Kafka broker")
	server, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: filepath.Join(work, "clickhouse"), NoRelay: true})
	if err != nil {
		return false, err
	}
	defer server.Stop()
	ch := newCHHTTP(server.HTTPAddr)
	kafka, err := testbed.StartKafka(int32(o.partitions), authTopic, lifecycleTopic)
	if err != nil {
		return false, err
	}
	defer kafka.Close()

	logf("producing %s events to %s (%d partitions, %d writers)", thousands(uint64(o.events)), authTopic, o.partitions, o.producers)
	gen := newGenerator(o.seed, o.events, time.Now())
	if err := gen.selfCheck(min(o.events, 10_000)); err != nil {
		return false, err
	}
	prod, err := produce(ctx, kafka.Brokers, authTopic, o.events, o.producers, gen)
	if err != nil {
		return false, err
	}
	if size, err := topicSize(ctx, kafka.Brokers[0], authTopic, o.partitions); err != nil {
		return false, err
	} else if size != int64(o.events) {
		return false, fmt.Errorf("%s holds %d messages after producing %d", authTopic, size, o.events)
	}

	for _, db := range []string{keywatchDB, engineDB} {
		if err := migrate(ctx, o.keywatch, server.Addr, db); err != nil {
			return false, err
		}
	}
	cfg := config.Default()
	cfg.ClickHouse.Addr = []string{server.Addr}
	conn, err := schema.Open(cfg.ClickHouse, engineDB)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if err := ingest.CreateRollupViews(ctx, conn); err != nil {
		return false, err
	}

	// The columns the engine's view fills: what the two tables are compared on.
	columns, err := filledColumns(ctx, ch, engineDB)
	if err != nil {
		return false, err
	}

	var phases []phase
	if o.only != "engine" {
		logf("measuring keywatch (%s)", o.keywatch)
		p, err := runKeywatch(ctx, ch, keywatchRun{
			bin: o.keywatch, brokers: kafka.Brokers, chAddr: server.Addr, db: keywatchDB, events: uint64(o.events),
			timeout: o.timeout, extra: o.keywatchEnv, workDir: work, chPid: server.Pid(), progress: o.progress,
		})
		if err != nil {
			return false, err
		}
		phases = append(phases, p)
		waitForMerges(ctx, ch, time.Minute)
	}
	if o.only != "keywatch" {
		logf("measuring ClickHouse's Kafka engine")
		p, err := runEngine(ctx, ch, engineRun{
			db: engineDB, broker: kafka.Brokers[0], topic: authTopic, events: uint64(o.events), timeout: o.timeout,
			settings: o.engine, columns: columns, chPid: server.Pid(), chLog: server.LogTail, progress: o.progress,
		})
		if err != nil {
			return false, err
		}
		phases = append(phases, p)
	}

	checks, err := checkPhases(ctx, ch, phases, columnNames(columns))
	if err != nil {
		return false, err
	}
	var rollups []ingest.RollupComparison
	if len(phases) == 2 {
		if rollups, err = ingest.CompareRollups(ctx, conn, keywatchDB, engineDB); err != nil {
			return false, err
		}
	}
	return report(o, prod, phases, checks, columns, rollups), nil
}

// checkPhases checks the database of every measured phase.
func checkPhases(ctx context.Context, ch *chHTTP, phases []phase, columns []string) ([]tableCheck, error) {
	var checks []tableCheck
	for _, p := range phases {
		db, isKeywatch := engineDB, p.name == "keywatch"
		if isKeywatch {
			db = keywatchDB
		}
		c, err := checkTable(ctx, ch, db, columns, isKeywatch)
		if err != nil {
			return nil, err
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// report prints the results and the checks' warnings; it returns whether every check passed.
func report(o options, prod produced, phases []phase, checks []tableCheck, columns []viewColumn, rollups []ingest.RollupComparison) bool {
	n := uint64(o.events)
	fmt.Printf("\nevents: %s (mean %.0f bytes), partitions: %d, produced in %.1fs (%s events/s)\n",
		thousands(n), prod.meanBytes(), o.partitions, prod.elapsed.Seconds(), thousands(uint64(float64(n)/prod.elapsed.Seconds())))
	for _, p := range phases {
		fmt.Println(phaseLine(p, n))
	}
	if len(phases) == 2 {
		fmt.Printf("ratio keywatch / kafka engine: %.2fx (throughput; >1 means keywatch is faster)\n",
			phases[1].waited.lastRow.Seconds()/phases[0].waited.lastRow.Seconds())
	}
	ok := true
	for _, c := range checks {
		problems := c.problems(n)
		for _, pr := range problems {
			fmt.Printf("WARNING: %s\n", pr)
			ok = false
		}
		if len(problems) == 0 {
			fmt.Printf("check %s: %s rows, %s distinct request_id, rollup counts %s requests\n",
				c.db, thousands(c.rows), thousands(c.requestIDs), thousands(c.rollupRequests))
		}
	}
	if len(checks) == 2 {
		if checks[0].checksum == checks[1].checksum {
			fmt.Printf("check: both tables hold the same rows (checksum over %s)\n", strings.Join(columnNames(columns), ", "))
		} else {
			fmt.Printf("WARNING: the tables differ: checksum %s in %s, %s in %s\n", checks[0].checksum, checks[0].db, checks[1].checksum, checks[1].db)
			ok = false
		}
	}
	for _, r := range rollups {
		if r.DifferentCells {
			fmt.Printf("WARNING: %s differs: %s groups in %s, %s in %s; %s of %s's and %s of %s's have no equal in the other\n", r.Table,
				thousands(r.GroupsA), keywatchDB, thousands(r.GroupsB), engineDB, thousands(r.OnlyA), keywatchDB, thousands(r.OnlyB), engineDB)
			ok = false
			continue
		}
		what := "the same " + thousands(r.GroupsA) + " groups in both, value by value"
		if r.GroupsA == 0 {
			what = "empty in both (the events carry no raw key)"
		}
		fmt.Printf("check %s: %s\n", r.Table, what)
	}
	return ok
}

func phaseLine(p phase, n uint64) string {
	secs := p.waited.lastRow.Seconds()
	perMillion := func(cpu float64) float64 { return cpu / (float64(n) / 1e6) }
	rate := thousands(uint64(float64(n) / secs))
	if p.name == "keywatch" {
		line := fmt.Sprintf("keywatch:     %5.1fs end to end (first row after %.1fs)  %s events/s  peak RSS %s  CPU %.1f s per million events (ClickHouse meanwhile: %.1f s per million)",
			secs, p.waited.firstRow.Seconds(), rate, megabytes(p.peakRSS), perMillion(p.cpu), perMillion(p.chCPU))
		if len(p.settings) > 0 {
			line += "\n  settings: " + strings.Join(p.settings, ", ")
		}
		return line
	}
	return fmt.Sprintf("kafka engine: %5.1fs end to end (first row after %.1fs)  %s events/s  ClickHouse CPU %.1f s per million events\n  settings: %s",
		secs, p.waited.firstRow.Seconds(), rate, perMillion(p.chCPU), strings.Join(p.settings, ", "))
}

// logf prints progress to stderr, keeping stdout for the report.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func megabytes(b uint64) string { return fmt.Sprintf("%d MB", b>>20) }

// thousands formats n with comma separators: 2,000,000.
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
