package testbed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ClickHouse is a running ClickHouse server on loopback: one this process launched from
// libchdb.so, or one named by KEYWATCH_TEST_CLICKHOUSE and reused.
type ClickHouse struct {
	// Addr is the native protocol address, host:port.
	Addr string
	// HTTPAddr is the HTTP interface address, host:port.
	HTTPAddr string
	// Dir is the data folder of a launched server; empty for a reused one.
	Dir string

	// direct is the native address ClickHouse itself listens on, behind the relay at Addr; for
	// tests that must reach the server unprotected.
	direct string

	cmd      *exec.Cmd
	exited   chan struct{}
	stderr   *tailBuffer
	stopping atomic.Bool // Stop was called: an exit is no death

	mu     sync.Mutex
	lostIn string // the test that was told of the server's death first
}

// ClickHouseOptions say where a launched server keeps its data and listens.
type ClickHouseOptions struct {
	Dir string
	// TCPPort and HTTPPort are the loopback ports of the native and HTTP protocols; 0 picks a
	// free one.
	TCPPort, HTTPPort int
	// Cluster, when set, makes the server a member of a cluster of that name: remote_servers with
	// one shard per address of Shards (one replica each, internal_replication on), macros {shard}
	// (this server's place in Shards, 01, 02...) and {replica} (r1), and an in-memory Keeper
	// (testkeeper) of its own. Distributed tables work on it; Replicated tables can be created but
	// not written (clickhouse-local has no interserver port), and ON CLUSTER fails (no DDL worker).
	Cluster string
	// Shards are the native addresses (127.0.0.1:port) of the cluster's shards, this server's
	// among them (TCPPort must then be set); empty: this server is the one shard.
	Shards []string
	// NoRelay serves the native port from ClickHouse itself, without the relay that keeps
	// vanishing clients from crashing it (see relay): for benchmarks, which kill no client and
	// should not pay for the relay's copy (10 to 15 % of a bare insert's throughput, 2026-12-06).
	NoRelay bool
}

// clusterConfig is the server configuration of cluster name whose shards are at shards, for the
// server at self.
func clusterConfig(name string, shards []string, self string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<clickhouse>\n  <remote_servers>\n    <%s>\n", name)
	shard := 0
	for i, addr := range shards {
		host, port, _ := net.SplitHostPort(addr)
		fmt.Fprintf(&b, "      <shard><internal_replication>true</internal_replication><replica><host>%s</host><port>%s</port></replica></shard>\n", host, port)
		if addr == self {
			shard = i + 1
		}
	}
	fmt.Fprintf(&b, "    </%s>\n  </remote_servers>\n", name)
	fmt.Fprintf(&b, "  <macros><shard>%02d</shard><replica>r1</replica></macros>\n", shard)
	b.WriteString("  <zookeeper><implementation>testkeeper</implementation></zookeeper>\n</clickhouse>\n")
	return b.String()
}

// FreePorts returns n loopback ports that are free now, for servers started later (the shards of
// a cluster must know each other's ports before they start).
func FreePorts(n int) ([]int, error) { return freePorts(n) }

// StartClickHouse launches a ClickHouse server and waits until it answers. The server runs in a
// child process (this executable again, see ServeIfLauncher) that ends when Stop is called, when it
// gets SIGTERM, or when this process dies.
func StartClickHouse(ctx context.Context, o ClickHouseOptions) (*ClickHouse, error) {
	dir := o.Dir
	lib, err := findLibchdb()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("testbed: find own executable to launch clickhouse: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	if o.TCPPort != 0 {
		ports[0] = o.TCPPort
	}
	if o.HTTPPort != 0 {
		ports[1] = o.HTTPPort
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: make the data folder %s: %w", dir, err)
	}
	var config string
	if o.Cluster != "" {
		self := fmt.Sprintf("127.0.0.1:%d", ports[0])
		shards := o.Shards
		if len(shards) == 0 {
			shards = []string{self}
		} else if !slices.Contains(shards, self) {
			return nil, fmt.Errorf("testbed: cluster shards %v do not include this server, %s", shards, self)
		}
		config = filepath.Join(dir, "keywatch-cluster.xml")
		if err := os.WriteFile(config, []byte(clusterConfig(o.Cluster, shards, self)), 0o644); err != nil {
			return nil, fmt.Errorf("testbed: cluster configuration: %w", err)
		}
	}
	opts, _ := json.Marshal(serveOptions{Lib: lib, Dir: dir, TCPPort: ports[0], HTTPPort: ports[1], Config: config, NoRelay: o.NoRelay})

	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+string(opts))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("testbed: read the clickhouse launcher's output: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testbed: start clickhouse launcher: %w", err)
	}
	ch := &ClickHouse{
		Addr:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		Dir:      dir,
		cmd:      cmd,
		exited:   make(chan struct{}),
		stderr:   stderr,
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if direct, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), readyLine+" direct="); ok && !signalled {
				ch.direct = direct
				close(ready)
				signalled = true
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(ch.exited)
	}()

	timeout := time.NewTimer(90 * time.Second)
	defer timeout.Stop()
	select {
	case <-ready:
		return ch, nil
	case <-ch.exited:
		return nil, fmt.Errorf("testbed: clickhouse exited before it was ready (%s): %s", cmd.ProcessState, stderr.String())
	case <-timeout.C:
		ch.Stop()
		return nil, fmt.Errorf("testbed: clickhouse not ready after 90s: %s", stderr.String())
	case <-ctx.Done():
		ch.Stop()
		return nil, ctx.Err()
	}
}

// Stop ends a launched server cleanly (SIGTERM, then SIGKILL after 20 s); its data stays in Dir.
// It does nothing for a reused server.
func (c *ClickHouse) Stop() {
	if c.cmd == nil {
		return
	}
	c.stopping.Store(true)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
}

// Pid is the launcher process's id; 0 for a reused server.
func (c *ClickHouse) Pid() int {
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Exited is closed when a launched server's process has ended.
func (c *ClickHouse) Exited() <-chan struct{} { return c.exited }

// Gone returns nil while a launched server runs, after Stop, and for a reused server. Once the
// server has died unasked, it returns what a test needs to know: the launcher's exit status and
// the last lines of the server's log.
func (c *ClickHouse) Gone() error {
	if c.cmd == nil {
		return nil
	}
	select {
	case <-c.exited:
	default:
		return nil
	}
	if c.stopping.Load() {
		return nil
	}
	how := c.cmd.ProcessState.String()
	if c.cmd.ProcessState.ExitCode() == exitFatal {
		how += " (ClickHouse logged a fatal error and stopped answering)"
	}
	return fmt.Errorf("testbed: the ClickHouse server at %s died: %s\nits data folder %s; the end of its log:\n%s",
		c.Addr, how, c.Dir, c.LogTail())
}

// LogTail is the end of a launched server's log: its last errors and its fatal report without the
// stack frames, then what the launcher last wrote to its standard error; "" for a reused server.
func (c *ClickHouse) LogTail() string {
	if c.cmd == nil {
		return ""
	}
	log, _ := os.ReadFile(filepath.Join(c.Dir, serverLog))
	var errs, fatal []string
	for line := range strings.Lines(string(log)) {
		if len(line) > 400 {
			line = line[:400] + "...\n"
		}
		switch {
		case fatalLevel.MatchString(line):
			if !stackFrame.MatchString(line) {
				fatal = append(fatal, line)
			}
		case strings.Contains(line, "<Error>") || strings.Contains(line, "<Critical>"):
			if len(fatal) == 0 {
				errs = append(errs, line)
			}
		}
	}
	tail := errs[max(0, len(errs)-10):]
	tail = append(tail, fatal[:min(len(fatal), 30)]...)
	return strings.Join(tail, "") + c.stderr.String()
}

// stackFrame matches the frames of a fatal report ("<Fatal> ClientBase: 12. ? @ 0x...") and its
// raw address list.
var stackFrame = regexp.MustCompile(`<Fatal> \S+: (\d+\. |Stack trace: 0x)`)

// answersPing says whether the HTTP interface at addr (host:port) answers /ping.
func answersPing(addr string) bool {
	ping := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	resp, err := ping.Get("http://" + addr + "/ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testbed: find a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// randomSuffix returns n random hex characters for database and group names.
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
