// Command bench-latency measures how long keywatch takes from an event to its Slack message under
// a steady background load. See `go run ./cmd/bench-latency --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/benchmark"
	"github.com/keywatch/keywatch/internal/schedule"
	"github.com/keywatch/keywatch/internal/testbed"
)

const description = `bench-latency measures keywatch's end-to-end latency: from the event that makes an incident
detectable to the first Slack message about it, under a steady background load.

In one process it starts a real ClickHouse server (the embedded libchdb.so), an in-process Kafka
broker (topics auth-events and key-lifecycle) and a local Slack Web API (slack-go's slacktest),
writes MaxMind-format geo databases of the simulated networks, and runs the real daemon,
'keywatch run' (the binary given by --keywatch), with a configuration file whose leak, lingering
and spike detectors run on --schedule and whose alerts are evaluated every --evaluate-interval
and sent at once (alerting.for and group_wait 0s). Before the daemon starts it writes 4 days of
history (7 to 3 days old: every key's usual networks are its baseline) and waits until keywatch
consumed it.

Then it keeps a load of --rate realistic benign events a second on auth-events (50 clients, ~250
keys, ~370-byte JSON events) for the whole run, and after --warmup injects --injections incidents
of each kind, interleaved and evenly spread over --inject-over, each on keys of its own client:

  leak       15 successful requests from as many addresses of a network and country the key never
             used (its client keeps calling from home);
  lingering  a rotation with a 30-minute grace period (key-lifecycle), then 3 successful requests of
             a job of the client that stays on the old key, while the rest of its traffic moves;
  spike      a rotation with a 7-day grace period, then 30 failed requests (401 invalid_key) on the
             new key from the client's servers, whose traffic keeps failing on it.

Measured per injection: from the moment its last needed event (the requests above, written after
the lifecycle event was acknowledged) was handed to the Kafka producer to the arrival at the local
Slack API of the first message naming its key and its detector; none within --timeout is missed.
Printed: the background rate achieved (never more than was produced) and keywatch's consumer lag,
the configuration that shapes the latency, the detectors' runs and mean duration, and per kind the
count, p50, p95 and max latency beside the target p95 <= schedule + evaluate interval + 5 s, MET or
MISSED (a missed injection counts as infinitely late), the first message of each kind, and every
missed injection. Exits 1 when a target is missed.

Usage: go run ./cmd/bench-latency --keywatch ./bin/keywatch [flags]

Flags:`

type options struct {
	keywatch         string
	rate             int
	injections       int
	schedule         string
	evaluateInterval time.Duration
	warmup           time.Duration
	injectOver       time.Duration
	timeout          time.Duration
	partitions       int
	writers          int
	seed             uint64
	progress         time.Duration
	keep             bool
}

func main() { benchmark.Main("bench-latency", parseFlags, run) }

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench-latency", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), description)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.keywatch, "keywatch", "", "path of the keywatch `binary` to run (required), e.g. ./bin/keywatch")
	fs.IntVar(&o.rate, "rate", 50_000, "background authentication events per second, kept for the whole run")
	fs.IntVar(&o.injections, "injections", 20, "injections of each kind (leak, lingering, spike)")
	fs.StringVar(&o.schedule, "schedule", "@every 10s", "schedule of the leak, lingering and spike detectors (detect.*.schedule)")
	fs.DurationVar(&o.evaluateInterval, "evaluate-interval", 5*time.Second, "alerting.evaluate_interval")
	fs.DurationVar(&o.warmup, "warmup", 20*time.Second, "background load before the first injection")
	fs.DurationVar(&o.injectOver, "inject-over", 150*time.Second, "the injections are spread evenly over this long")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "an injection with no Slack message this long after it is missed")
	fs.IntVar(&o.partitions, "partitions", 4, "partitions of the auth-events topic")
	fs.IntVar(&o.writers, "writers", 4, "parallel kafka-go writers of the background load")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the simulated traffic")
	fs.DurationVar(&o.progress, "progress", 10*time.Second, "how often to print a progress line to stderr (0: never)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder (keywatch's configuration and log, ClickHouse's data) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.keywatch == "":
		return o, errors.New("--keywatch is required: the keywatch binary to run (make build writes ./bin/keywatch)")
	case o.rate < 1:
		return o, errors.New("--rate must be at least 1")
	case o.injections < 1 || o.injections > 999:
		return o, errors.New("--injections must be 1 to 999 (key ids carry it in three digits)")
	case o.evaluateInterval < time.Second:
		return o, errors.New("--evaluate-interval must be at least 1s (keywatch's lower bound)")
	case o.partitions < 1 || o.writers < 1:
		return o, errors.New("--partitions and --writers must be at least 1")
	case o.timeout <= 0 || o.injectOver < 0 || o.warmup < 0:
		return o, errors.New("--timeout must be positive, --inject-over and --warmup not negative")
	}
	if _, err := schedule.Parse(o.schedule); err != nil {
		return o, fmt.Errorf("--schedule %q: %w", o.schedule, err)
	}
	bin, err := exec.LookPath(o.keywatch)
	if err != nil {
		return o, fmt.Errorf("--keywatch %s: %w", o.keywatch, err)
	}
	if o.keywatch, err = filepath.Abs(bin); err != nil {
		return o, fmt.Errorf("--keywatch %s: %w", bin, err)
	}
	return o, nil
}

const (
	authTopic      = "auth-events"
	lifecycleTopic = "key-lifecycle"
	// catchUpTimeout bounds the wait for keywatch to consume the history before the load starts.
	catchUpTimeout = 3 * time.Minute
	// lagEvery is how often keywatch's consumer lag is sampled during the load.
	lagEvery = 2 * time.Second
)

// run sets everything up, keeps the load, injects, waits for the messages and prints the report;
// it returns whether every kind met its target.
func run(ctx context.Context, o options) (bool, error) {
	work, err := os.MkdirTemp("", "bench-latency-")
	if err != nil {
		return false, fmt.Errorf("create the work folder: %w", err)
	}
	if o.keep {
		logf("work folder (kept): %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	set := settings{schedule: o.schedule, evaluateInterval: o.evaluateInterval}

	logf("starting ClickHouse, the Kafka broker and the local Slack API")
	server, err := testbed.StartClickHouse(ctx, testbed.ClickHouseOptions{Dir: filepath.Join(work, "clickhouse"), NoRelay: true})
	if err != nil {
		return false, err
	}
	defer server.Stop()
	broker, err := testbed.StartKafka(int32(o.partitions), authTopic, lifecycleTopic)
	if err != nil {
		return false, err
	}
	defer broker.Close()
	slack := startLocalSlack()
	defer slack.stop()
	asn, country, err := writeGeo(work)
	if err != nil {
		return false, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return false, err
	}
	configPath := filepath.Join(work, "keywatch.yaml")
	yaml := configYAML(set, broker.Brokers, server.Addr, httpAddr, slack.url(), asn, country)
	if err := os.WriteFile(configPath, []byte(yaml), 0o644); err != nil {
		return false, fmt.Errorf("write keywatch's configuration %s: %w", configPath, err)
	}
	if err := migrate(ctx, o.keywatch, configPath); err != nil {
		return false, err
	}

	u := newUniverse(o.seed)
	subjects := newSubjects(o.seed, o.injections)
	ids := newRequestIDs(o.seed)
	lifecycle, past := history(u, subjects, time.Now(), o.seed, ids)
	logf("writing history: %d lifecycle events, %d authentication events (%s to %s ago)", len(lifecycle), len(past), historyFrom, historyUntil)
	if err := broker.Produce(ctx, lifecycleTopic, lifecycle...); err != nil {
		return false, err
	}
	if err := broker.Produce(ctx, authTopic, past...); err != nil {
		return false, err
	}

	logf("starting keywatch (%s)", o.keywatch)
	kw, err := startDaemon(o.keywatch, configPath, filepath.Join(work, "keywatch.log"))
	if err != nil {
		return false, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = kw.stop()
		}
	}()
	fail := func(err error) (bool, error) {
		return false, fmt.Errorf("%w\nlast lines of keywatch's log %s:\n%s", err, kw.logPath, benchmark.Tail(kw.logPath, 20))
	}
	if err := waitCaughtUp(ctx, broker, kw, o.partitions, int64(len(past))); err != nil {
		return fail(err)
	}

	logf("keeping %d events/s of background load; %d injections of each kind after %s, over %s", o.rate, o.injections, o.warmup, o.injectOver)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var produced counter
	var wg sync.WaitGroup
	loadErr := make(chan error, 2)
	loadStart := time.Now()
	wg.Go(func() {
		if err := load(loadCtx, broker.Brokers, authTopic, o.rate, o.writers, o.seed, u, ids, &produced); err != nil {
			loadErr <- err
			stopLoad()
		}
	})
	subjectWriter := newWriter(broker.Brokers, authTopic)
	defer subjectWriter.Close()
	wg.Go(func() {
		if err := subjectTraffic(loadCtx, subjectWriter, subjects, o.seed, ids, &produced); err != nil {
			loadErr <- err
			stopLoad()
		}
	})
	var maxLag atomic.Int64
	wg.Go(func() { watch(loadCtx, broker, o, loadStart, &produced, &maxLag, slack) })

	injs, err := inject(loadCtx, broker.Brokers, subjects, o, loadStart, ids)
	if err == nil {
		err = waitAnnounced(loadCtx, kw, slack, injs, o.timeout)
	}
	loadEnd := time.Now()
	stopLoad()
	wg.Wait()
	select {
	case lerr := <-loadErr:
		return fail(lerr)
	default:
	}
	if err != nil {
		return fail(err)
	}
	endLag, lagErr := broker.CommittedLag(ctx, groupID, authTopic, o.partitions)
	runs, runsErr := detectorRuns(ctx, httpAddr)
	stopped = true
	if err := kw.stop(); err != nil {
		return fail(err)
	}
	r := report{
		o: o, set: set, loadFor: loadEnd.Sub(loadStart), events: produced.events.Load(), bytes: produced.bytes.Load(),
		maxLag: maxLag.Load(), endLag: endLag, lagErr: lagErr, runs: runs, runsErr: runsErr,
		arrivals: slack.received(), injections: injs,
	}
	return r.print(os.Stdout), nil
}

// waitCaughtUp waits until keywatch committed every history event on every partition.
func waitCaughtUp(ctx context.Context, broker *testbed.Kafka, kw *daemon, partitions int, events int64) error {
	start := time.Now()
	for {
		lag, all, err := historyLag(ctx, broker.Brokers, partitions)
		if err == nil && all && lag == 0 {
			logf("keywatch consumed the history (%d events) in %.1fs", events, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > catchUpTimeout {
			return fmt.Errorf("keywatch did not consume the %d history events within %s (lag %d, every partition committed: %t, %v)", events, catchUpTimeout, lag, all, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kw.exited:
			return fmt.Errorf("keywatch exited while consuming the history (%s)", kw.cmd.ProcessState)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// historyLag returns how many messages of the auth topic keywatch's group has not committed, and
// whether it committed an offset on every partition (a group that committed nothing yet has no
// lag to report).
func historyLag(ctx context.Context, brokers []string, partitions int) (int64, bool, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second}
	ids := make([]int, 0, partitions)
	reqs := make([]kafka.OffsetRequest, 0, partitions)
	for p := range partitions {
		ids = append(ids, p)
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{authTopic: reqs}})
	if err != nil {
		return 0, false, fmt.Errorf("end offsets of %s: %w", authTopic, err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: groupID, Topics: map[string][]int{authTopic: ids}})
	if err != nil {
		return 0, false, fmt.Errorf("offsets of group %s on %s: %w", groupID, authTopic, err)
	}
	end := map[int]int64{}
	for _, p := range ends.Topics[authTopic] {
		end[p.Partition] = p.LastOffset
	}
	var lag int64
	n := 0
	for _, p := range committed.Topics[authTopic] {
		if p.CommittedOffset < 0 {
			if end[p.Partition] == 0 {
				n++ // nothing to commit on an empty partition
			}
			lag += end[p.Partition]
			continue
		}
		n++
		lag += end[p.Partition] - p.CommittedOffset
	}
	return lag, n == partitions, nil
}

// inject writes the injections, kinds interleaved, evenly spread over o.injectOver from
// loadStart + o.warmup, and returns them with the time each became detectable.
func inject(ctx context.Context, brokers []string, subjects []*subject, o options, loadStart time.Time, ids *requestIDs) ([]injection, error) {
	lc := newWriter(brokers, lifecycleTopic)
	defer lc.Close()
	auth := newWriter(brokers, authTopic)
	defer auth.Close()
	r := rand.New(rand.NewPCG(o.seed, 0x1e))
	gap := o.injectOver / time.Duration(len(subjects))
	var out []injection
	for i, s := range subjects {
		at := loadStart.Add(o.warmup + time.Duration(i)*gap)
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		s.state.Store(statePaused)
		lifecycle, requests := s.events(r, time.Now(), ids)
		for _, v := range lifecycle {
			if err := lc.WriteMessages(ctx, kafka.Message{Value: v}); err != nil {
				return out, fmt.Errorf("produce the lifecycle event of injection %s %s: %w", s.kind.detector(), s.oldKey, err)
			}
		}
		detectable := time.Now()
		msgs := make([]kafka.Message, 0, len(requests))
		for _, q := range requests {
			q.ts = detectable
			msgs = append(msgs, kafka.Message{Value: q.appendJSON(nil)})
		}
		if err := auth.WriteMessages(ctx, msgs...); err != nil {
			return out, fmt.Errorf("produce the %d requests of injection %s %s: %w", len(msgs), s.kind.detector(), s.oldKey, err)
		}
		s.state.Store(stateAfter)
		out = append(out, injection{subject: s, detectable: detectable})
		logf("[%5.1fs] injected %-9s %s", time.Since(loadStart).Seconds(), s.kind.detector(), s.oldKey)
	}
	return out, nil
}

// waitAnnounced waits until every injection was announced or timed out.
func waitAnnounced(ctx context.Context, kw *daemon, slack *localSlack, injs []injection, timeout time.Duration) error {
	if len(injs) == 0 {
		return nil
	}
	last := injs[len(injs)-1].detectable
	for {
		got := match(injs, slack.received(), timeout)
		done := 0
		for _, a := range got {
			if a.found {
				done++
			}
		}
		if done == len(injs) || time.Since(last) > timeout {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kw.exited:
			return fmt.Errorf("keywatch exited during the measurement (%s)", kw.cmd.ProcessState)
		case <-time.After(time.Second):
		}
	}
}

// watch samples keywatch's consumer lag every lagEvery, keeps its maximum, and prints a progress
// line every o.progress.
func watch(ctx context.Context, broker *testbed.Kafka, o options, start time.Time, c *counter, maxLag *atomic.Int64, slack *localSlack) {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	var lastEvents int64
	lastAt, lastPrint := start, start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			lag, err := broker.CommittedLag(ctx, groupID, authTopic, o.partitions)
			if err == nil && lag > maxLag.Load() {
				maxLag.Store(lag)
			}
			if o.progress <= 0 || now.Sub(lastPrint) < o.progress {
				continue
			}
			events := c.events.Load()
			logf("[%5.1fs] produced %d events (%.0f/s in the last %.0fs), keywatch's lag %d, %d Slack messages",
				now.Sub(start).Seconds(), events, float64(events-lastEvents)/now.Sub(lastAt).Seconds(), now.Sub(lastAt).Seconds(), lag, len(slack.received()))
			lastEvents, lastAt, lastPrint = events, now, now
		}
	}
}

// freeAddr returns a free loopback address for keywatch's HTTP listener.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port for keywatch's HTTP listener: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// period is the longest gap between two runs of a schedule over its next 100 runs: what a
// detectable event may wait for the next run.
func period(spec string) time.Duration {
	s, err := schedule.Parse(spec)
	if err != nil {
		return 0
	}
	t := time.Now()
	var longest time.Duration
	for range 100 {
		next := s.Next(t)
		longest = max(longest, next.Sub(t))
		t = next
	}
	return longest
}

// report is what the run measured.
type report struct {
	o          options
	set        settings
	loadFor    time.Duration
	events     int64
	bytes      int64
	maxLag     int64
	endLag     int64
	lagErr     error
	runs       map[string]runStats
	runsErr    error
	arrivals   []arrival
	injections []injection
}

// targetSlack is the part of the latency target beyond a detector's schedule and the evaluate
// interval (issue 17): ingest, the detector's own run and the Slack call.
const targetSlack = 5 * time.Second

// print writes the report and returns whether every kind met its target.
func (r report) print(w io.Writer) bool {
	o := r.o
	fmt.Fprintf(w, "\nbench-latency on %d CPUs, %s UTC\n", runtime.NumCPU(), time.Now().UTC().Format("2006-01-02 15:04"))
	rate := float64(r.events) / r.loadFor.Seconds()
	fmt.Fprintf(w, "background load: %s events/s asked, %s events/s achieved over %.0fs (%s events, mean %.0f bytes)\n",
		thousands(int64(o.rate)), thousands(int64(rate)), r.loadFor.Seconds(), thousands(r.events), float64(r.bytes)/float64(max(r.events, 1)))
	if rate < 0.99*float64(o.rate) {
		fmt.Fprintf(w, "WARNING: the load fell short of %s events/s on this machine\n", thousands(int64(o.rate)))
	}
	lag := fmt.Sprintf("at most %s events (sampled every %s), %s at the end", thousands(r.maxLag), lagEvery, thousands(r.endLag))
	if r.lagErr != nil {
		lag = fmt.Sprintf("at most %s events (sampled every %s); at the end unknown: %v", thousands(r.maxLag), lagEvery, r.lagErr)
	}
	fmt.Fprintf(w, "keywatch's consumer lag: %s\n", lag)
	fmt.Fprintf(w, "configuration: %s\n", strings.Join(configShown(r.set), "; "))
	if r.runsErr != nil {
		fmt.Fprintf(w, "detector runs: unknown (%v)\n", r.runsErr)
	} else {
		var parts []string
		for _, k := range kinds {
			s := r.runs[k.detector()]
			parts = append(parts, fmt.Sprintf("%s %d runs, mean %.2fs", k.detector(), s.runs, s.seconds/float64(max(s.runs, 1))))
		}
		fmt.Fprintf(w, "detector runs (keywatch's metrics): %s\n", strings.Join(parts, "; "))
	}
	target := period(r.set.schedule) + r.set.evaluateInterval + targetSlack
	fmt.Fprintf(w, "target: p95 <= schedule (%s: every %s) + evaluate interval %s + %s = %s\n\n",
		r.set.schedule, period(r.set.schedule), r.set.evaluateInterval, targetSlack, target)

	got := match(r.injections, r.arrivals, o.timeout)
	fmt.Fprintf(w, "%-10s %10s %9s %8s %8s %8s  %s\n", "kind", "injections", "announced", "p50", "p95", "max", "target")
	ok := true
	var missed []announced
	for _, k := range kinds {
		var as []announced
		for _, a := range got {
			if a.inj.subject.kind == k {
				as = append(as, a)
				if !a.found {
					missed = append(missed, a)
				}
			}
		}
		s := summarize(as)
		verdict := "MET"
		if s.p95 > target {
			verdict, ok = "MISSED", false
		}
		fmt.Fprintf(w, "%-10s %10d %9d %8s %8s %8s  %s (%s)\n", k.detector(), s.count, s.count-s.missed, seconds(s.p50), seconds(s.p95), seconds(s.max), verdict, seconds(target))
	}
	for _, k := range kinds {
		for _, a := range got {
			if a.inj.subject.kind == k && a.found {
				fmt.Fprintf(w, "%s, the first message: %s\n", k.detector(), strings.ReplaceAll(firstLines(a.text, 2), "\n", " | "))
				break
			}
		}
	}
	sort.Slice(missed, func(i, j int) bool { return missed[i].inj.detectable.Before(missed[j].inj.detectable) })
	for _, a := range missed {
		fmt.Fprintf(w, "missed: %s %s (client %s), injected %s: no message naming it within %s\n",
			a.inj.subject.kind.detector(), a.inj.subject.oldKey, a.inj.subject.clientID, a.inj.detectable.UTC().Format("15:04:05.000"), o.timeout)
	}
	posts, updates := 0, 0
	for _, m := range r.arrivals {
		if m.method == "chat.postMessage" {
			posts++
		} else {
			updates++
		}
	}
	fmt.Fprintf(w, "Slack: %d posts, %d updates; %d of them named an injection's key before it was injected\n",
		posts, updates, early(r.injections, r.arrivals))
	return ok
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// seconds formats a latency: 8.4s, or "never" for a missed injection.
func seconds(d time.Duration) string {
	if d == never {
		return "never"
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// logf prints progress to stderr, keeping stdout for the report.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// thousands formats n with comma separators: 2,000,000.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && c != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
