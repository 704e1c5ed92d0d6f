package ingest_test

import (
	"testing"
	"time"

	"github.com/keywatch/keywatch/demo/simulate"
	"github.com/keywatch/keywatch/ingest"
)

// benchStart is when the benchmarks' simulated traffic starts.
var benchStart = time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

// benchMessages are realistic authentication messages from the demo's simulated traffic, about
// one in 500 of them malformed.
func benchMessages(n int) [][]byte {
	traffic := simulate.New(1, benchStart)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = traffic.AuthEvent(benchStart.Add(time.Duration(i) * time.Millisecond))
	}
	return msgs
}

// BenchmarkDecodeEvent measures Decoder.Event alone, per message.
func BenchmarkDecodeEvent(b *testing.B) {
	d := newDecoder(b)
	msgs := benchMessages(10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = d.Event(msgs[i%len(msgs)], benchStart)
		i++
	}
}

// BenchmarkChunk measures what a fetcher does with each message kafka-go hands it: decode it and
// add it to a chunk's columns, or make its dead letter; per message.
func BenchmarkChunk(b *testing.B) {
	f := ingest.NewChunkFiller(newDecoder(b), authTopic, benchStart)
	msgs := benchMessages(10_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f.Add(msgs[i%len(msgs)])
		i++
	}
}
