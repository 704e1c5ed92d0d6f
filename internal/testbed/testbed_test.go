package testbed

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

var ch *ClickHouse

func TestMain(m *testing.M) { Main(m, &ch) }

func TestClickHouseAnswersQueries(t *testing.T) {
	db := ch.NewDatabase(t)
	conn := ch.Conn(t, db)
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("clickhouse %s at %s", v, ch.Addr)
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
