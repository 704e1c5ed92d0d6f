package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// chunkSize is how many messages one produce call writes, all to one partition. Larger batches
// stalled librdkafka (inside ClickHouse) on the in-process broker; 1,000 works.
const chunkSize = 1000

type produced struct {
	events  int
	bytes   int64
	elapsed time.Duration
}

func (p produced) meanBytes() float64 { return float64(p.bytes) / float64(max(p.events, 1)) }

// produce writes n events to topic with parallel kafka-go writers, in chunks of chunkSize.
// Chunk c always holds the same events, whichever writer sends it.
func produce(ctx context.Context, brokers []string, topic string, n, writers int, gen *generator) (produced, error) {
	start := time.Now()
	chunks := (n + chunkSize - 1) / chunkSize
	var next atomic.Int64
	var total atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for range writers {
		wg.Go(func() {
			if err := produceChunks(ctx, brokers, topic, n, chunks, &next, &total, gen); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return produced{}, firstErr
	}
	return produced{events: n, bytes: total.Load(), elapsed: time.Since(start)}, nil
}

// produceChunks is one writer: it takes chunk numbers from next until all are sent.
func produceChunks(ctx context.Context, brokers []string, topic string, n, chunks int, next, total *atomic.Int64, gen *generator) error {
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{ChunkSize: chunkSize}, // one call's messages go to one partition
		BatchSize:    chunkSize,
		BatchBytes:   8 << 20,
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
	defer w.Close()
	msgs := make([]kafka.Message, 0, chunkSize)
	arena := make([]byte, 0, chunkSize*512)
	for {
		c := int(next.Add(1) - 1)
		if c >= chunks {
			return nil
		}
		r := rand.New(rand.NewPCG(gen.seed, uint64(c)))
		msgs, arena = msgs[:0], arena[:0]
		for i := c * chunkSize; i < min((c+1)*chunkSize, n); i++ {
			from := len(arena)
			arena = gen.appendEvent(arena, r, i)
			msgs = append(msgs, kafka.Message{Value: arena[from:len(arena):len(arena)]})
			total.Add(int64(len(arena) - from))
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce chunk %d of %d to %s: %w", c+1, chunks, topic, err)
		}
	}
}

// topicSize returns the sum of the high watermarks of topic's partitions: how many messages it holds.
func topicSize(ctx context.Context, broker, topic string, partitions int) (int64, error) {
	var sum int64
	for p := range partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, p)
		if err != nil {
			return 0, fmt.Errorf("dial leader of %s/%d: %w", topic, p, err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return 0, fmt.Errorf("read last offset of %s/%d: %w", topic, p, err)
		}
		sum += last
	}
	return sum, nil
}
