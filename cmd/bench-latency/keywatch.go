package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keywatch/keywatch/internal/benchmark"
	"github.com/keywatch/keywatch/internal/config"
)

// fingerprintKey is the fingerprint key keywatch runs with; the events carry no raw API keys,
// but keywatch refuses to start without one.
const fingerprintKey = "bench-latency-fingerprint-key-0123456789"

// slackToken is the bot token keywatch presents to the local Slack API, which accepts any.
const slackToken = "xoxb-bench-latency-local"

// keywatchDB is the database keywatch owns in the benchmark.
const keywatchDB = "kw"

// groupID is keywatch's consumer group; its lag says whether keywatch keeps up with the load.
const groupID = "bench-latency"

// settings are the configuration values the latency depends on, printed beside the results.
type settings struct {
	schedule         string        // of the leak, lingering and spike detectors
	evaluateInterval time.Duration // alerting.evaluate_interval
}

// configYAML is keywatch's configuration file in the benchmark: the detectors under test on a
// short schedule, alerts that fire and are sent at once, hygiene and digests off (they post
// messages the benchmark does not measure), everything else at its default.
func configYAML(s settings, brokers []string, chAddr, httpAddr, slackURL, asn, country string) string {
	q := strconv.Quote
	return fmt.Sprintf(`# bench-latency: keywatch as the latency benchmark runs it
kafka:
  brokers: [%s]
  group_id: %s
clickhouse:
  addr: [%s]
  database: %s
geo:
  asn_database: %s
  country_database: %s
http:
  listen: %s
detect:
  lingering: {schedule: %s}
  spike: {schedule: %s}
  leak: {schedule: %s}
  hygiene: {schedule: ""}
alerting:
  evaluate_interval: %s
  for: {default: 0s, leak: 0s, lingering: 0s, spike: 0s, hygiene: 0s}
  group_wait: 0s
slack:
  api_url: %s
  default_channel: %s
digest:
  schedule: ""
  nudge_schedule: ""
leader:
  enabled: false
log:
  level: info
`, strings.Join(brokers, ", "), groupID, q(chAddr), keywatchDB, q(asn), q(country), q(httpAddr),
		q(s.schedule), q(s.schedule), q(s.schedule), s.evaluateInterval, q(slackURL), benchChannel)
}

// configShown are the values of the configuration that shape the latency, for the report: those
// configYAML sets and the defaults it leaves (read from the configuration package keywatch is
// built from).
func configShown(s settings) []string {
	d := config.Default()
	return []string{
		"detect.{leak,lingering,spike}.schedule " + s.schedule,
		"alerting.evaluate_interval " + s.evaluateInterval.String(),
		"alerting.for 0s (every detector)",
		"alerting.group_wait 0s",
		fmt.Sprintf("slack.min_interval %s, alerting.group_interval %s (defaults)", d.Slack.MinInterval, d.Alerting.GroupInterval),
		fmt.Sprintf("ingest.batch_max_wait %s, batch_max_rows %d (defaults)", d.Ingest.BatchMaxWait, d.Ingest.BatchMaxRows),
		fmt.Sprintf("detect.leak.new_for %s, min_requests %d; detect.lingering.quiet_for %s; detect.spike.min_failures %d, min_rate %g (defaults)",
			d.Detect.Leak.NewFor, d.Detect.Leak.MinRequests, d.Detect.Lingering.QuietFor, d.Detect.Spike.MinFailures, d.Detect.Spike.MinRate),
	}
}

func secretsEnv(configPath string) []string {
	return benchmark.KeywatchEnv("KEYWATCH_CONFIG="+configPath, "KEYWATCH_FINGERPRINT_KEY="+fingerprintKey, "KEYWATCH_SLACK_TOKEN="+slackToken)
}

// migrate creates keywatch's database with its schema by running `keywatch migrate`.
func migrate(ctx context.Context, bin, configPath string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate")
	cmd.Env = secretsEnv(configPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s migrate with %s: %w\n%s", bin, configPath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// daemon is `keywatch run` as a child process.
type daemon struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startDaemon starts `keywatch run` with the configuration at configPath, its output to logPath.
func startDaemon(bin, configPath, logPath string) (*daemon, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create keywatch's log %s: %w", logPath, err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = secretsEnv(configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s run with %s: %w", bin, configPath, err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { _ = cmd.Wait(); logFile.Close(); close(d.exited) }()
	return d, nil
}

// stop sends SIGTERM and waits for the exit, killing the process after 30 s.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return fmt.Errorf("keywatch had exited (%s)", d.cmd.ProcessState)
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("keywatch did not stop within 30s of SIGTERM; killed")
	}
	return nil
}

// detectorRuns reads keywatch's /metrics: per detector, its runs and their mean duration
// (keywatch_detect_run_duration_seconds).
func detectorRuns(ctx context.Context, httpAddr string) (map[string]runStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("read keywatch's metrics at %s: %w", httpAddr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read keywatch's metrics at %s: %w", httpAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read keywatch's metrics at %s: %s", httpAddr, resp.Status)
	}
	out := map[string]runStats{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasPrefix(name, "keywatch_detect_run_duration_seconds_") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		det := labelValue(labels, "detector")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if det == "" || err != nil {
			continue
		}
		s := out[det]
		switch strings.TrimPrefix(name, "keywatch_detect_run_duration_seconds_") {
		case "sum":
			s.seconds = v
		case "count":
			s.runs = int(v)
		}
		out[det] = s
	}
	return out, sc.Err()
}

// runStats are a detector's runs and the time they took in all.
type runStats struct {
	runs    int
	seconds float64
}

// labelValue returns a label's value from a Prometheus label list (a="x",b="y").
func labelValue(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
