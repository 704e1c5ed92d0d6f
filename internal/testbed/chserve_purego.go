package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

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

// serveClickHouse runs clickhouse-local from libchdb.so as a server on loopback until ctx ends.
// Its native protocol is served on opts.TCPPort through a relay (see relay) that keeps a vanishing
// client from taking the server down, ClickHouse itself listening on another port (unless
// opts.NoRelay). The HTTP
// interface, which survives such clients, is ClickHouse's own on opts.HTTPPort. The server's last
// query reads a FIFO; closing our end of it ends that query, and with it the server, cleanly.
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
		return fmt.Errorf("testbed: make the data folder %s: %w", opts.Dir, err)
	}
	fifo := filepath.Join(opts.Dir, "keywatch-stop.fifo")
	_ = os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("testbed: make %s: %w", fifo, err)
	}
	defer os.Remove(fifo)

	tcpPort := opts.TCPPort // ClickHouse's own
	if !opts.NoRelay {
		own, err := freePorts(1)
		if err != nil {
			return err
		}
		tcpPort = own[0]
		native, err := listenRelay(fmt.Sprintf("127.0.0.1:%d", opts.TCPPort), fmt.Sprintf("127.0.0.1:%d", tcpPort))
		if err != nil {
			return fmt.Errorf("testbed: listen on the native port %d: %w", opts.TCPPort, err)
		}
		go native.serve(ctx)
	}

	logFile := filepath.Join(opts.Dir, serverLog)
	args := []string{
		"clickhouse",
		"--path=" + opts.Dir,
		fmt.Sprintf("--tcp_port=%d", tcpPort),
		fmt.Sprintf("--http_port=%d", opts.HTTPPort),
		"--listen_host=127.0.0.1",
		"--log-level=warning",
		"--logger.log=" + logFile,
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

	go holdOpen(ctx, fifo, opts.HTTPPort, fmt.Sprintf("%s direct=127.0.0.1:%d", readyLine, tcpPort), out)
	go exitOnFatal(ctx, logFile)

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
// announces readiness with ready once the HTTP interface answers a ping, and closes the FIFO when
// ctx ends.
func holdOpen(ctx context.Context, fifo string, httpPort int, ready string, out io.Writer) {
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
	for ctx.Err() == nil {
		if answersPing(fmt.Sprintf("127.0.0.1:%d", httpPort)) {
			fmt.Fprintln(out, ready)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-ctx.Done()
}

// exitOnFatal ends this process with exitFatal once ClickHouse has logged a fatal error (an
// uncaught exception, a signal) and finished writing its report: the embedded server then stops
// answering but never exits, and whoever waits for it would wait forever.
func exitOnFatal(ctx context.Context, logFile string) {
	var log *os.File // opened once ClickHouse has created it, then read as it grows
	defer func() {
		if log != nil {
			log.Close()
		}
	}()
	fatal := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		if log == nil {
			f, err := os.Open(logFile)
			if err != nil {
				continue // not written yet
			}
			log = f
		}
		b, _ := io.ReadAll(log)
		fatal = fatal || fatalLine(string(b))
		if fatal && len(b) == 0 { // the report is complete: nothing new for 250 ms
			fmt.Fprintf(os.Stderr, "testbed: ClickHouse logged a fatal error in %s and stopped answering; ending it\n", logFile)
			os.Exit(exitFatal)
		}
	}
}

// fatalLine says whether log text holds a line logged at the Fatal level.
func fatalLine(log string) bool {
	for line := range strings.Lines(log) {
		if fatalLevel.MatchString(line) {
			return true
		}
	}
	return false
}

func goString(p *byte) string {
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
