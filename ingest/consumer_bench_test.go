package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keywatch/keywatch/demo/simulate"
)

// BenchmarkConsumer measures the consumer in this process end to end, from the first fetch to the
// last row visible in ClickHouse, over 300,000 simulated events on 4 partitions. The broker runs
// in this process too, so profiles (-cpuprofile) show its share beside the consumer's. For the
// figures the issue asks for, with the Kafka engine beside it, run `make bench-ingest`.
func BenchmarkConsumer(b *testing.B) {
	const events = 300_000
	traffic := simulate.New(1, time.Now())
	values := make([][]byte, events)
	for i := range values {
		values[i] = traffic.AuthEvent(time.Now())
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e := newEnv(b, nil)
		e.opts.BatchMaxRows, e.opts.BatchMaxWait = 50000, 200*time.Millisecond
		if err := e.kafka.Produce(context.Background(), authTopic, values...); err != nil {
			b.Fatal(err)
		}
		e.opts.GroupID = fmt.Sprintf("bench-%d", time.Now().UnixNano())
		b.StartTimer()
		stop := e.run(b)
		for e.count(b, "SELECT count() FROM auth_events")+e.count(b, "SELECT count() FROM dead_letters") < events {
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		_ = stop()
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
}
