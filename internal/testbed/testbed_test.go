package testbed

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

var ch *SharedClickHouse

// orphanParentEnv makes this test binary start a server, print the launcher's pid and wait to be
// killed: the parent whose death the launcher must notice.
const orphanParentEnv = "KEYWATCHTEST_ORPHAN_PARENT"

func TestMain(m *testing.M) {
	if addrs := os.Getenv(vanishingClientEnv); addrs != "" {
		holdConnections(addrs)
	}
	if dir := os.Getenv(orphanParentEnv); dir != "" {
		ServeIfLauncher()
		c, err := StartClickHouse(context.Background(), ClickHouseOptions{Dir: dir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(c.Pid())
		select {}
	}
	Main(m, &ch)
}

func TestClickHouseAnswersQueries(t *testing.T) {
	db := ch.NewDatabase(t)
	conn := ch.Conn(t, db)
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("clickhouse %s at %s", v, ch.Addr(t))
}

func TestDataOutlivesTheServer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := StartClickHouse(ctx, ClickHouseOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	conn := first.Conn(t, "default")
	for _, q := range []string{
		"CREATE TABLE kept (n UInt32) ENGINE = MergeTree ORDER BY n",
		"INSERT INTO kept SELECT number FROM numbers(1000)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	first.Stop()
	select {
	case <-first.Exited():
	default:
		t.Fatal("Stop returned before the server exited")
	}

	second, err := StartClickHouse(ctx, ClickHouseOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop) // after the connection below is closed
	var n uint64
	if err := second.Conn(t, "default").QueryRow(ctx, "SELECT count() FROM kept").Scan(&n); err != nil || n != 1000 {
		t.Fatalf("after a restart the table holds %d rows (%v), want 1000", n, err)
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	k, err := StartKafka(3, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Produce(context.Background(), "t", []byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, GroupID: "g", Topic: "t", StartOffset: kafka.FirstOffset})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < 3 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got[string(m.Value)] = true
	}
}

func TestLauncherStopsWhenItsParentDies(t *testing.T) {
	parent := exec.Command(os.Args[0])
	parent.Env = append(os.Environ(), orphanParentEnv+"="+t.TempDir())
	out, _ := parent.StdoutPipe()
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("parent printed no launcher pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	if !alive(pid) {
		t.Fatalf("launcher %d is not running", pid)
	}
	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("launcher %d still runs 30s after its parent was killed", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its new parent to reap it does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// lazyEnv makes this test binary run the TestLazy tests below.
const lazyEnv = "KEYWATCHTEST_LAZY"

// TestServerStartsOnFirstUse runs this package's tests with libchdb.so missing: a test that
// touches no database passes, for no server is started for it, and tests that need one fail,
// each saying what is missing, when they first ask for it.
func TestServerStartsOnFirstUse(t *testing.T) {
	run := func(pattern string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.v")
		cmd.Env = append(os.Environ(), lazyEnv+"=1", reuseEnv+"=",
			"KEYWATCH_LIBCHDB="+filepath.Join(t.TempDir(), "libchdb.so"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("^TestLazyNoDatabase$")
	if err != nil || !strings.Contains(out, "--- PASS: TestLazyNoDatabase") {
		t.Fatalf("a test that touches no database does not pass without libchdb.so (%v):\n%s", err, out)
	}
	out, err = run("^TestLazy")
	if err == nil {
		t.Fatalf("the tests that need a database passed without libchdb.so:\n%s", out)
	}
	for _, want := range []string{"--- PASS: TestLazyNoDatabase", "--- FAIL: TestLazyDatabaseA", "--- FAIL: TestLazyDatabaseB"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "libchdb.so is missing: run `make chdb`"); n != 2 {
		t.Errorf("%d failures say libchdb.so is missing, want one for each of the 2 tests that need it:\n%s", n, out)
	}
}

func TestLazyNoDatabase(t *testing.T) {
	if os.Getenv(lazyEnv) == "" {
		t.Skip("run by TestServerStartsOnFirstUse")
	}
	t.Parallel()
}

func TestLazyDatabaseA(t *testing.T) {
	if os.Getenv(lazyEnv) == "" {
		t.Skip("run by TestServerStartsOnFirstUse")
	}
	t.Parallel()
	ch.NewDatabase(t)
}

func TestLazyDatabaseB(t *testing.T) {
	if os.Getenv(lazyEnv) == "" {
		t.Skip("run by TestServerStartsOnFirstUse")
	}
	t.Parallel()
	ch.Conn(t, "default")
}
