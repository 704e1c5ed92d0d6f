package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keywatch/keywatch/internal/benchmark"
)

// fingerprintKey is the fingerprint key keywatch runs with; the events carry no raw API keys,
// but keywatch refuses to start without one.
const fingerprintKey = "bench-ingest-fingerprint-key-0123456789"

// migrate creates database db with keywatch's schema by running `keywatch migrate`.
func migrate(ctx context.Context, bin, chAddr, db string) error {
	cmd := exec.CommandContext(ctx, bin, "migrate")
	cmd.Env = benchmark.KeywatchEnv(
		"KEYWATCH_CLICKHOUSE_ADDR="+chAddr,
		"KEYWATCH_CLICKHOUSE_DATABASE="+db,
		"KEYWATCH_FINGERPRINT_KEY="+fingerprintKey,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s migrate (database %s): %w\n%s", bin, db, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// phase is what one ingest path achieved.
type phase struct {
	name     string
	waited   waited
	peakRSS  uint64   // bytes; 0 when not measured
	cpu      float64  // CPU seconds of the ingesting process itself; 0 when it is ClickHouse
	chCPU    float64  // CPU seconds ClickHouse spent during the phase
	settings []string // non-default settings the ingest path ran with
}

type keywatchRun struct {
	bin      string
	brokers  []string
	chAddr   string
	db       string
	events   uint64
	timeout  time.Duration
	extra    []string // more KEYWATCH_* settings from --keywatch-env
	workDir  string
	chPid    int
	progress time.Duration
}

// runKeywatch starts `keywatch run`, waits until it stored every event, takes its peak RSS and
// CPU time, then stops it with SIGTERM.
func runKeywatch(ctx context.Context, ch *chHTTP, k keywatchRun) (phase, error) {
	p := phase{name: "keywatch"}
	logPath := filepath.Join(k.workDir, "keywatch.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return p, fmt.Errorf("keywatch log: %w", err)
	}
	defer logFile.Close()

	cmd := exec.Command(k.bin, "run")
	cmd.Env = benchmark.KeywatchEnv(append([]string{
		"KEYWATCH_KAFKA_BROKERS=" + strings.Join(k.brokers, ","),
		"KEYWATCH_KAFKA_GROUP_ID=bench-keywatch",
		"KEYWATCH_CLICKHOUSE_ADDR=" + k.chAddr,
		"KEYWATCH_CLICKHOUSE_DATABASE=" + k.db,
		"KEYWATCH_FINGERPRINT_KEY=" + fingerprintKey,
		"KEYWATCH_HTTP_LISTEN=127.0.0.1:0",
		"KEYWATCH_LOG_LEVEL=warn",
	}, k.extra...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.settings = k.extra

	chCPU0, _ := cpuSeconds(k.chPid)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return p, fmt.Errorf("start %s run: %w", k.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopped := false
	defer func() {
		if !stopped {
			stopProcess(cmd, exited)
		}
	}()

	pid := cmd.Process.Pid
	var sampledRSS uint64
	var polls int
	p.waited, err = waitForRows(ctx, ch, waitSpec{
		table: k.db + ".auth_events", want: k.events, start: start, timeout: k.timeout, label: "keywatch", every: k.progress,
		check: func() error {
			select {
			case <-exited:
				return fmt.Errorf("keywatch exited early (%s)", cmd.ProcessState)
			default:
			}
			if rss, err := memBytes(pid, "VmRSS"); err == nil {
				sampledRSS = max(sampledRSS, rss)
			}
			if polls++; polls%10 == 0 { // once a second: dead letters mean the events are wrong
				if dead, err := ch.uint(ctx, "SELECT count() FROM "+k.db+".dead_letters"); err == nil && dead > 0 {
					return fmt.Errorf("keywatch dead-lettered %d messages; reasons: %s", dead, deadLetterReasons(ctx, ch, k.db))
				}
			}
			return nil
		},
		status: func() string { return fmt.Sprintf("RSS %s so far", megabytes(sampledRSS)) },
	})
	if err != nil {
		stopProcess(cmd, exited)
		stopped = true
		return p, fmt.Errorf("%w\nlast lines of %s:\n%s", err, logPath, benchmark.Tail(logPath, 30))
	}
	chCPU1, _ := cpuSeconds(k.chPid)
	p.chCPU = chCPU1 - chCPU0
	// Measured just before stopping: the shutdown is not part of ingesting.
	if p.peakRSS, err = memBytes(pid, "VmHWM"); err != nil {
		p.peakRSS = sampledRSS
	}
	if p.cpu, err = cpuSeconds(pid); err != nil {
		return p, err
	}
	stopped = true
	if err := stopProcess(cmd, exited); err != nil {
		return p, fmt.Errorf("%w\nlast lines of %s:\n%s", err, logPath, benchmark.Tail(logPath, 30))
	}
	return p, nil
}

// stopProcess sends SIGTERM and waits for the exit, killing the process after 30 s.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("keywatch did not stop within 30s of SIGTERM; killed")
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("keywatch stopped with %s after SIGTERM, want exit status 0", cmd.ProcessState)
	}
	return nil
}

func deadLetterReasons(ctx context.Context, ch *chHTTP, db string) string {
	out, err := ch.query(ctx, "SELECT reason, any(error), count() FROM "+db+".dead_letters GROUP BY reason FORMAT TSV")
	if err != nil {
		return err.Error()
	}
	return out
}
