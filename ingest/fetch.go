package ingest

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/keywatch/keywatch/rotation"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/backoff"
)

// chunkMax bounds the messages of one chunk; chunkWait bounds how long a chunk stays open.
const (
	chunkMax  = 2000
	chunkWait = 50 * time.Millisecond
)

// fetch reads one partition from tp.offset until ctx ends, decoding messages into chunks and
// handing them to out in offset order.
func (c *Consumer) fetch(ctx context.Context, tp topicPartition, stored storedUpTo, out chan<- *chunk) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:       c.opts.Brokers,
		Dialer:        c.opts.Dialer,
		Topic:         tp.topic,
		Partition:     tp.partition,
		MinBytes:      1,
		MaxBytes:      max(16<<20, 2*c.opts.MaxMessageBytes),
		MaxWait:       250 * time.Millisecond,
		QueueCapacity: 500,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			c.log.Debug("kafka reader: "+msg, "args", args)
		}),
	})
	defer r.Close()
	if err := r.SetOffset(tp.offset); err != nil {
		c.log.Error("cannot seek", "topic", tp.topic, "partition", tp.partition, "offset", tp.offset, "err", err)
		return
	}
	lag := c.metrics.lag.WithLabelValues(tp.topic, strconv.Itoa(tp.partition))
	limit := min(chunkMax, c.opts.BatchMaxRows)
	wait := min(chunkWait, c.opts.BatchMaxWait)
	for ctx.Err() == nil {
		ch := c.chunks.get()
		ch.reset(tp.topic, tp.partition)
		ch.stored = stored.events
		err := c.fill(ctx, r, ch, limit, wait, stored)
		if ch.messages > 0 {
			lag.Set(float64(r.Lag()))
			out <- ch
		} else {
			c.chunks.put(ch)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("fetch failed; retrying", "topic", tp.topic, "partition", tp.partition, "err", err)
			backoff.Sleep(ctx, time.Second)
		}
	}
}

// fill reads into ch until it holds limit messages, wait has passed since its first message, or
// ctx ends.
func (c *Consumer) fill(ctx context.Context, r *kafka.Reader, ch *chunk, limit int, wait time.Duration, stored storedUpTo) error {
	fetchCtx := ctx // until the first message; then bounded by the chunk's deadline
	for ch.messages < limit {
		m, err := r.FetchMessage(fetchCtx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
		if ch.messages == 0 {
			ch.first, ch.firstTime, ch.readAt = m.Offset, m.Time, time.Now()
			var cancel context.CancelFunc
			fetchCtx, cancel = context.WithTimeout(ctx, wait)
			defer cancel()
		}
		ch.last = m.Offset
		ch.messages++
		c.decode(ch, &m, stored)
	}
	return nil
}

// decode turns m into an event, a lifecycle event or a dead letter of ch, unless an earlier run
// already stored it.
func (c *Consumer) decode(ch *chunk, m *kafka.Message, stored storedUpTo) {
	var err error
	switch {
	case len(m.Value) > c.opts.MaxMessageBytes:
		err = decodeErr(ReasonTooLarge, "%d bytes is over ingest.max_message_bytes (%d)", len(m.Value), c.opts.MaxMessageBytes)
	case m.Topic == c.opts.AuthEventsTopic:
		var ev Event
		if ev, err = c.opts.Decoder.Event(m.Value, ch.readAt); err == nil {
			if m.Offset <= stored.eventsInAll() {
				ch.skipped++
				return
			}
			ch.events.add(&ev, m.Topic, int32(m.Partition), m.Offset)
			return
		}
	case m.Topic == c.opts.LifecycleTopic:
		var ev rotation.Event
		if ev, err = DecodeLifecycle(m.Value); err == nil {
			if m.Offset <= stored.lifecycle {
				ch.skipped++
				return
			}
			ch.lifecycle = append(ch.lifecycle, storedLifecycle{Event: ev, topic: m.Topic, partition: int32(m.Partition), offset: m.Offset})
			return
		}
	default:
		err = decodeErr(ReasonInvalidValue, "message from unexpected topic %q", m.Topic)
	}
	if m.Offset <= stored.deadLetters {
		ch.skipped++
		return
	}
	d := c.opts.Decoder.DeadLetter(m.Value, err)
	d.Topic, d.Partition, d.Offset = m.Topic, int32(m.Partition), m.Offset
	ch.deadLetters = append(ch.deadLetters, d)
	c.log.Debug("dead letter", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", d.Reason)
}
