package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// roleEnv marks a process started by StartClickHouse as the ClickHouse launcher; its value is the
// JSON of serveOptions. Any binary that calls ServeIfLauncher first thing can play that role, so
// tests re-execute their own test binary and the demo re-executes keywatch.
const roleEnv = "KEYWATCH_TESTBED_CLICKHOUSE"

// serverLog is the server's log file in its data folder: warnings and errors only.
const serverLog = "clickhouse-server.log"

// readyLine is what the launcher prints on stdout once both ports answer.
const readyLine = "clickhouse ready"

type serveOptions struct {
	Lib      string `json:"lib"`
	Dir      string `json:"dir"`
	TCPPort  int    `json:"tcp_port"`
	HTTPPort int    `json:"http_port"`
	Config   string `json:"config,omitempty"` // a configuration file to load, "" for none
}

// ServeIfLauncher turns this process into the ClickHouse launcher when StartClickHouse started it,
// and exits when the server stops. Otherwise it returns at once. Call it first in main and TestMain.
func ServeIfLauncher() {
	raw := os.Getenv(roleEnv)
	if raw == "" {
		return
	}
	var opts serveOptions
	if err := json.Unmarshal([]byte(raw), &opts); err != nil {
		fmt.Fprintf(os.Stderr, "testbed: launcher options in %s: %v\n", roleEnv, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = untilParentDies(ctx)
	if err := serveClickHouse(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// untilParentDies returns a context that ends when this process is re-parented, i.e. when the
// process that started it has died without stopping it.
func untilParentDies(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}

// localResultV2 mirrors struct local_result_v2 of chdb.h.
type localResultV2 struct {
	buf          *byte
	len          uintptr
	vec          unsafe.Pointer
	elapsed      float64
	rowsRead     uint64
	bytesRead    uint64
	errorMessage *byte
}

// serveClickHouse runs clickhouse-local from libchdb.so as a server on loopback ports until ctx
// ends. The server's last query reads a FIFO; closing our end of it ends that query, and with it
// the server, cleanly.
func serveClickHouse(ctx context.Context, opts serveOptions, out io.Writer) error {
	lib, err := purego.Dlopen(opts.Lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("testbed: load %s: %w", opts.Lib, err)
	}
	var query func(argc int32, argv **byte) *localResultV2
	var free func(*localResultV2)
	purego.RegisterLibFunc(&query, lib, "query_stable_v2")
	purego.RegisterLibFunc(&free, lib, "free_result_v2")

	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("testbed: data folder: %w", err)
	}
	fifo := filepath.Join(opts.Dir, "keywatch-stop.fifo")
	_ = os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("testbed: make %s: %w", fifo, err)
	}
	defer os.Remove(fifo)

	args := []string{
		"clickhouse",
		"--path=" + opts.Dir,
		fmt.Sprintf("--tcp_port=%d", opts.TCPPort),
		fmt.Sprintf("--http_port=%d", opts.HTTPPort),
		"--listen_host=127.0.0.1",
		"--log-level=warning",
		"--logger.log=" + filepath.Join(opts.Dir, serverLog),
		"--query=SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
			"SELECT count() FROM file('" + fifo + "', 'LineAsString') FORMAT Null",
	}
	if opts.Config != "" {
		args = append(args, "--config-file="+opts.Config)
	}
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		b := append([]byte(a), 0)
		argv[i] = &b[0]
	}

	go holdOpen(ctx, fifo, opts.HTTPPort, out)

	res := query(int32(len(args)), &argv[0])
	runtime.KeepAlive(argv)
	if res == nil {
		return errors.New("testbed: clickhouse returned no result")
	}
	defer free(res)
	if res.errorMessage != nil {
		return fmt.Errorf("testbed: clickhouse: %s", goString(res.errorMessage))
	}
	return nil
}

// holdOpen opens the writing end of the FIFO once the server reads it (by then it listens),
// announces readiness, and closes the FIFO when ctx ends.
func holdOpen(ctx context.Context, fifo string, httpPort int, out io.Writer) {
	var w *os.File
	for w == nil {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			w = f
			break
		}
		select {
		case <-ctx.Done():
			// Stopped while starting: wait for the reader so the server can end normally.
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				f.Close()
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	defer w.Close()
	ping := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for ctx.Err() == nil {
		resp, err := ping.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", httpPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintln(out, readyLine)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-ctx.Done()
}

func goString(p *byte) string {
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
