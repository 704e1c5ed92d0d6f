package testbed

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// vanishingClientEnv makes this test binary a ClickHouse client that opens connections with reads
// in flight on both sides, prints "holding" and waits to be killed. Its value is "native,http".
const vanishingClientEnv = "KEYWATCHTEST_VANISHING_CLIENT"

// holdConnections is the vanishing client: on the native port, queries whose results it stops
// reading (unread data makes the kernel answer the kill with a reset), an insert whose data never
// comes (the server waits in a read), idle sessions, one with answers unread, and a half-sent
// Hello; on the HTTP port, a result it stops reading.
func holdConnections(addrs string) {
	native, httpAddr, _ := strings.Cut(addrs, ",")
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "vanishing client:", err)
		os.Exit(1)
	}
	var keep []any
	for range 3 {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{native}})
		if err != nil {
			fail(err)
		}
		rows, err := conn.Query(ctx, "SELECT number, toString(number) FROM system.numbers")
		if err != nil {
			fail(err)
		}
		rows.Next()
		keep = append(keep, conn, rows)
	}
	insert, err := clickhouse.Open(&clickhouse.Options{Addr: []string{native}})
	if err != nil {
		fail(err)
	}
	if err := insert.Exec(ctx, "CREATE TABLE IF NOT EXISTS vanish (n UInt64) ENGINE = Memory"); err != nil {
		fail(err)
	}
	batch, err := insert.PrepareBatch(ctx, "INSERT INTO vanish")
	if err != nil {
		fail(err)
	}
	keep = append(keep, insert, batch)
	idle, err := clickhouse.Open(&clickhouse.Options{Addr: []string{native}})
	if err != nil {
		fail(err)
	}
	if err := idle.Ping(ctx); err != nil {
		fail(err)
	}
	keep = append(keep, idle)
	pinger, err := idleWithAnswersUnread(native)
	if err != nil {
		fail(err)
	}
	keep = append(keep, pinger)
	half, err := net.Dial("tcp", native)
	if err != nil {
		fail(err)
	}
	if _, err := half.Write([]byte{0, 20, 'k', 'e', 'y'}); err != nil { // a client name of 20 bytes, 3 sent
		fail(err)
	}
	keep = append(keep, half)
	for range 2 {
		resp, err := http.Get("http://" + httpAddr + "/?query=" + url.QueryEscape("SELECT number, toString(number) FROM system.numbers"))
		if err != nil {
			fail(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 4096)); err != nil {
			fail(err)
		}
		keep = append(keep, resp)
	}
	time.Sleep(200 * time.Millisecond) // let the server fill the socket buffers
	fmt.Println("holding")
	select {}
}

// idleWithAnswersUnread opens a native session that waits in the server's read of its next
// packet while the answers to its pings lie unread on its side: closing it, or killing its
// process, resets it, which the embedded server dies of when it sees the reset itself.
func idleWithAnswersUnread(addr string) (*net.TCPConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	hello := []byte{0, 6, 'v', 'a', 'n', 'i', 's', 'h', 1, 0}
	hello = binary.AppendUvarint(hello, 54460) // protocol revision; its addendum is a quota key
	hello = append(hello, 7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0)
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Read(make([]byte, 512)); err != nil { // the server's hello
		c.Close()
		return nil, err
	}
	if _, err := c.Write([]byte{0, 4, 4, 4}); err != nil { // an empty quota key, three pings
		c.Close()
		return nil, err
	}
	time.Sleep(100 * time.Millisecond) // the pongs arrive
	return c.(*net.TCPConn), nil
}

// TestServerOutlivesClientsKilledMidRead kills, again and again, a client process that holds
// connections with reads in flight, and checks after each kill that the server still answers.
func TestServerOutlivesClientsKilledMidRead(t *testing.T) {
	server, err := StartClickHouse(context.Background(), ClickHouseOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Stop)
	const kills = 20
	for i := range kills {
		client := exec.Command(os.Args[0], "-test.run=^$")
		client.Env = append(os.Environ(), vanishingClientEnv+"="+server.Addr+","+server.HTTPAddr)
		client.Stderr = os.Stderr
		out, _ := client.StdoutPipe()
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "holding" {
			client.Process.Kill()
			client.Wait()
			t.Fatalf("kill %d: the client did not get its connections going (%q, %v); server: %v", i+1, line, err, server.Gone())
		}
		client.Process.Signal(syscall.SIGKILL)
		client.Wait()
		if err := answers(server); err != nil {
			t.Fatalf("after %d of %d kills the server does not answer: %v\n%v", i+1, kills, err, server.Gone())
		}
	}
	// Nothing runs on for the clients that vanished: the endless queries were cancelled.
	conn := server.Conn(t, "default")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var running uint64
		q := "SELECT count() FROM system.processes WHERE query LIKE '%FROM system.numbers%' AND query NOT LIKE '%system.processes%'"
		if err := conn.QueryRow(context.Background(), q).Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d queries of killed clients still run 30 s after the last kill", running)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answers runs one query on a new connection, after giving a server that is about to die 300 ms
// to do so.
func answers(server *ClickHouse) error {
	select {
	case <-server.Exited():
		return fmt.Errorf("the server exited")
	case <-time.After(300 * time.Millisecond):
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{server.Addr}})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var one uint8
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// TestServerOutlivesBadOpenings opens native connections with what is no Hello, or a Hello the
// server would fail on in its handshake, each of which the embedded server aborts on.
func TestServerOutlivesBadOpenings(t *testing.T) {
	server := ch.Server(t)
	withUser := func(user string) []byte {
		b := binary.AppendUvarint([]byte{0, 1, 'x', 1, 0}, 54460) // client x 1.0, revision 54460
		b = append(b, 0, byte(len(user)))                         // database "", the user
		return append(append(b, user...), 0)                      // password ""
	}
	for name, opening := range map[string][]byte{
		"not a Hello":          {5, 1, 2},
		"a Hello cut short":    {0, 20, 'k', 'e', 'y'},
		"a huge client name":   {0, 0xff, 0xff, 0xff, 0x7f},
		"a Hello, then closed": withUser("default"),
	} {
		c, err := net.Dial("tcp", server.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(opening)
		time.Sleep(50 * time.Millisecond)
		c.Close()
		if err := answers(server); err != nil {
			t.Fatalf("after %s the server does not answer: %v\n%v", name, err, server.Gone())
		}
	}
	// An HTTP request on the native port gets ClickHouse's own note on the right port.
	c, err := net.Dial("tcp", server.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(c); !strings.Contains(string(b), "is for clickhouse-client program") {
		t.Errorf("an HTTP request on the native port was answered %q", b)
	}
}

// doomedEnv makes this test binary run the doomed tests below on a shared server of their own.
const doomedEnv = "KEYWATCHTEST_DOOMED"

// TestDeadServerIsReported runs two tests on a shared server that dies in the first (by a reset
// sent to ClickHouse itself, past the relay) and checks what each of them says.
func TestDeadServerIsReported(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDoomed", "-test.v")
	cmd.Env = append(os.Environ(), doomedEnv+"=1", "TMPDIR="+t.TempDir()) // the dead server's folder is kept
	out, err := cmd.CombinedOutput()
	t.Logf("the doomed tests print:\n%s", out)
	if err == nil {
		t.Fatal("the doomed tests passed")
	}
	first, second, _ := strings.Cut(string(out), "=== RUN   TestDoomedSecond")
	for _, want := range []string{
		"--- FAIL: TestDoomedFirst",
		"died: exit status 134 (ClickHouse logged a fatal error and stopped answering)",
		"Terminate called for uncaught exception",
		"Connection reset by peer, while reading from socket",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("the first test's failure does not say %q", want)
		}
	}
	if want := "is gone: it died during TestDoomedFirst"; !strings.Contains(second, "--- FAIL: TestDoomedSecond") || !strings.Contains(second, want) {
		t.Errorf("the second test does not fail saying %q", want)
	}
	if strings.Contains(second, "connection refused") || strings.Contains(second, "Terminate called") {
		t.Errorf("the second test repeats the death or fails on a refused connection")
	}
}

func TestDoomedFirst(t *testing.T) {
	if os.Getenv(doomedEnv) == "" {
		t.Skip("run by TestDeadServerIsReported")
	}
	db := ch.NewDatabase(t)
	c, err := idleWithAnswersUnread(ch.Server(t).direct)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close() // a reset ClickHouse sees itself
	time.Sleep(100 * time.Millisecond)
	if err := ch.Conn(t, db).Exec(context.Background(), "CREATE TABLE t (n UInt8) ENGINE = Memory"); err != nil {
		t.Fatalf("create a table: %v", err)
	}
}

func TestDoomedSecond(t *testing.T) {
	if os.Getenv(doomedEnv) == "" {
		t.Skip("run by TestDeadServerIsReported")
	}
	ch.NewDatabase(t)
}

// BenchmarkInsertThroughRelay inserts the same batches through the relay and straight into
// ClickHouse, to show what the relay costs:
// go test -run '^$' -bench InsertThroughRelay -benchtime 20x ./internal/testbed/
func BenchmarkInsertThroughRelay(b *testing.B) {
	const rows = 200_000
	server := ch.Server(b)
	for _, path := range []struct{ name, addr string }{{"relay", server.Addr}, {"direct", server.direct}} {
		b.Run(path.name, func(b *testing.B) {
			db := ch.NewDatabase(b)
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{path.addr}, Auth: clickhouse.Auth{Database: db}})
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			ctx := context.Background()
			if err := conn.Exec(ctx, "CREATE TABLE t (n UInt64, s String) ENGINE = Null"); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(rows * 24)
			for b.Loop() {
				batch, err := conn.PrepareBatch(ctx, "INSERT INTO t")
				if err != nil {
					b.Fatal(err)
				}
				for i := range uint64(rows) {
					batch.Append(i, "a string of sixteen")
				}
				if err := batch.Send(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
