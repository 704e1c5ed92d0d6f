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

// chunkSize is how many background events one produce call writes, all to one partition: at
// 50,000 events/s a chunk is due every 20 ms, fine-grained enough for a steady rate, large enough
// that the in-process broker is not the bottleneck (bench-ingest writes chunks of 1,000).
const chunkSize = 1000

// subjectTick is how often the subjects' own traffic is written: each subject sends one request
// a second on average.
const subjectTick = time.Second

// counter counts what a producer wrote.
type counter struct {
	events atomic.Int64
	bytes  atomic.Int64
}

// newWriter is a kafka-go writer that waits for the broker's acknowledgement; its messages go
// to one partition per call (round-robin over calls).
func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{ChunkSize: chunkSize},
		BatchSize:    chunkSize,
		BatchBytes:   8 << 20,
		BatchTimeout: time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
}

// load writes background events to topic at rate events/s with parallel writers until ctx ends:
// chunk c is due at start + c·chunkSize/rate, and each event carries the time it was made. A
// machine that cannot keep up falls behind the schedule; what was written is counted, so the
// rate achieved is what the counter says.
func load(ctx context.Context, brokers []string, topic string, rate, writers int, seed uint64, u *universe, ids *requestIDs, c *counter) error {
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			wr := newWriter(brokers, topic)
			defer wr.Close()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			msgs := make([]kafka.Message, 0, chunkSize)
			arena := make([]byte, 0, chunkSize*512)
			for {
				n := next.Add(1) - 1
				due := start.Add(time.Duration(float64(n*chunkSize) / float64(rate) * float64(time.Second)))
				if wait := time.Until(due); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				if ctx.Err() != nil {
					return
				}
				msgs, arena = msgs[:0], arena[:0]
				now := time.Now()
				for range chunkSize {
					q := u.background(r, now, ids)
					from := len(arena)
					arena = q.appendJSON(arena)
					msgs = append(msgs, kafka.Message{Value: arena[from:len(arena):len(arena)]})
				}
				if err := wr.WriteMessages(ctx, msgs...); err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("produce %d background events to %s: %w", len(msgs), topic, err)
					}
					return
				}
				c.events.Add(int64(len(msgs)))
				c.bytes.Add(int64(len(arena)))
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// subjectTraffic writes the subjects' own requests every subjectTick until ctx ends.
func subjectTraffic(ctx context.Context, w *kafka.Writer, subjects []*subject, seed uint64, ids *requestIDs, c *counter) error {
	r := rand.New(rand.NewPCG(seed, 0x5b))
	t := time.NewTicker(subjectTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			var msgs []kafka.Message
			size := 0
			for _, s := range subjects {
				for _, q := range s.requests(r, now, ids) {
					v := q.appendJSON(nil)
					size += len(v)
					msgs = append(msgs, kafka.Message{Value: v})
				}
			}
			if len(msgs) == 0 {
				continue
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("produce %d requests of the injections' clients: %w", len(msgs), err)
			}
			c.events.Add(int64(len(msgs)))
			c.bytes.Add(int64(size))
		}
	}
}

// History spans: what the detectors' baselines are made of.
const (
	// historyFrom and historyUntil bound the history's event times (before now): every key's
	// networks and countries were first used before detect.leak.new_for (48 h), so they are its
	// baseline, and the spike detector's 7-day baseline holds days of the subjects' traffic.
	historyFrom  = 7 * 24 * time.Hour
	historyUntil = 3 * 24 * time.Hour
	// historyPerHour requests per key and hour: enough for every key to be seen from each of its
	// client's networks, hour after hour.
	historyPerHour = 3
)

// history returns the past: every key's creation (lifecycle) and historyPerHour requests per key
// and hour between historyFrom and historyUntil before now, from its client's usual addresses.
func history(u *universe, subjects []*subject, now time.Time, seed uint64, ids *requestIDs) (lifecycle [][]byte, auth [][]byte) {
	r := rand.New(rand.NewPCG(seed, 0x4157))
	created := now.Add(-historyFrom - 24*time.Hour)
	for _, c := range u.clients {
		for _, k := range c.keys {
			lifecycle = append(lifecycle, keyCreated(k, c.id, created))
		}
	}
	for _, s := range subjects {
		lifecycle = append(lifecycle, keyCreated(s.oldKey, s.clientID, created))
	}
	for h := now.Add(-historyFrom).Truncate(time.Hour); h.Before(now.Add(-historyUntil)); h = h.Add(time.Hour) {
		for _, c := range u.clients {
			for _, k := range c.keys {
				for range historyPerHour {
					ts := h.Add(time.Duration(r.Int64N(int64(time.Hour))))
					q := u.background(r, ts, ids)
					q.keyID, q.clientID, q.ip = k, c.id, c.ips[r.IntN(len(c.ips))]
					q.userAgent = c.agents[r.IntN(len(c.agents))]
					auth = append(auth, q.appendJSON(nil))
				}
			}
		}
		for _, s := range subjects {
			for n := 0; n < historyPerHour; {
				ts := h.Add(time.Duration(r.Int64N(int64(time.Hour))))
				for _, q := range s.requests(r, ts, ids) {
					auth = append(auth, q.appendJSON(nil))
					n++
				}
			}
		}
	}
	return lifecycle, auth
}
