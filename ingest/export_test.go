package ingest

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/keywatch/keywatch/ingest/mapping"
	"github.com/segmentio/kafka-go"
)

// ChunkFiller decodes messages into a chunk as a fetcher does, for benchmarks outside the package.
type ChunkFiller struct {
	c      *Consumer
	ch     *chunk
	stored storedUpTo
	offset int64
	texts  *mapping.Texts
}

// NewChunkFiller returns a ChunkFiller decoding auth events of topic with d, read at readAt.
func NewChunkFiller(d *Decoder, topic string, readAt time.Time) *ChunkFiller {
	c := NewConsumer(Options{AuthEventsTopic: topic, LifecycleTopic: topic + "-lifecycle", MaxMessageBytes: 1 << 20, Decoder: d}, nil)
	ch := new(chunk)
	ch.reset(topic, 0)
	ch.readAt = readAt
	return &ChunkFiller{c: c, ch: ch, stored: nothingStored(), texts: mapping.NewTexts()}
}

// Add decodes value into the chunk, which starts again once it holds chunkMax messages.
func (f *ChunkFiller) Add(value []byte) {
	if f.ch.messages == chunkMax {
		f.ch.reset(f.ch.topic, 0)
	}
	m := kafka.Message{Topic: f.ch.topic, Offset: f.offset, Value: value}
	f.offset++
	f.ch.messages++
	f.c.decode(f.ch, &m, f.stored, f.texts)
}

// StoreBatch stores values, messages 0 to len(values)-1 of partition 0 of topic, as one batch of
// chunks of chunkMax messages, the way the consumer stores a batch: every table, one insert each,
// with the batch's deduplication token.
func StoreBatch(ctx context.Context, conn driver.Conn, d *Decoder, topic string, values [][]byte, readAt time.Time) error {
	c := NewConsumer(Options{AuthEventsTopic: topic, LifecycleTopic: topic + "-lifecycle", MaxMessageBytes: 1 << 20, Decoder: d}, conn)
	b := &batch{}
	texts := mapping.NewTexts()
	for i, v := range values {
		if i%chunkMax == 0 {
			ch := new(chunk)
			ch.reset(topic, 0)
			ch.first, ch.firstTime, ch.readAt, ch.stored = int64(i), readAt, readAt, nothingStored().events
			b.chunks = append(b.chunks, ch)
		}
		ch := b.chunks[len(b.chunks)-1]
		m := kafka.Message{Topic: topic, Offset: int64(i), Value: v}
		ch.last = m.Offset
		ch.messages++
		b.messages++
		c.decode(ch, &m, nothingStored(), texts)
	}
	if err := c.writer.write(ctx, b); err != nil {
		return err
	}
	rollups := newRollupRows()
	rollups.addBatch(b)
	return c.writer.writeRollups(ctx, b.dedupToken(), rollups.inserts())
}
