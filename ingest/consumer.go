package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
)

// Options configure a Consumer.
type Options struct {
	Brokers         []string
	GroupID         string
	AuthEventsTopic string
	LifecycleTopic  string
	// StartFrom is where a group without committed offsets starts: "earliest" or "latest".
	StartFrom       string
	BatchMaxRows    int
	BatchMaxWait    time.Duration
	MaxMessageBytes int
	// ShutdownGrace bounds the last insert after the context ends; what is not stored by then is
	// left uncommitted and read again on the next start.
	ShutdownGrace time.Duration
	Fingerprinter *Fingerprinter
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Consumer reads both topics as one consumer group member and stores what it reads in batches.
// Offsets are committed only after ClickHouse acknowledged every row of the batch holding them.
type Consumer struct {
	opts    Options
	reader  *kafka.Reader
	writer  writer
	log     *slog.Logger
	metrics *Metrics
	failing atomic.Bool
}

// NewConsumer joins the consumer group lazily: nothing is fetched before Run.
func NewConsumer(opts Options, conn driver.Conn) *Consumer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	start := kafka.FirstOffset
	if opts.StartFrom == "latest" {
		start = kafka.LastOffset
	}
	log := opts.Logger.With("component", "ingest")
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        opts.Brokers,
		GroupID:        opts.GroupID,
		GroupTopics:    []string{opts.AuthEventsTopic, opts.LifecycleTopic},
		MinBytes:       1,
		MaxBytes:       max(16<<20, 2*opts.MaxMessageBytes),
		MaxWait:        250 * time.Millisecond,
		QueueCapacity:  4096,
		StartOffset:    start,
		CommitInterval: 0, // synchronous commits, only from store
		ErrorLogger:    kafka.LoggerFunc(func(msg string, args ...any) { log.Warn("kafka: " + fmt.Sprintf(msg, args...)) }),
	})
	return &Consumer{opts: opts, reader: reader, writer: writer{conn: conn}, log: log, metrics: opts.Metrics}
}

// Failing reports whether the last attempt to store a batch failed.
func (c *Consumer) Failing() bool { return c.failing.Load() }

// Run consumes until ctx ends, then stores the batch in flight (within ShutdownGrace), commits
// it, leaves the group and returns nil. It returns an error only when the reader fails for good.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.reader.Close()
	c.log.Info("consuming", "brokers", c.opts.Brokers, "group", c.opts.GroupID,
		"topics", []string{c.opts.AuthEventsTopic, c.opts.LifecycleTopic})
	for {
		b, fetchErr := c.fill(ctx)
		if b.messages > 0 {
			storeCtx := ctx
			if ctx.Err() != nil {
				var cancel context.CancelFunc
				storeCtx, cancel = context.WithTimeout(context.Background(), c.opts.ShutdownGrace)
				defer cancel()
			}
			if err := c.store(storeCtx, b); err != nil {
				c.log.Warn("batch abandoned uncommitted; it is read again on the next start", "messages", b.messages, "error", err)
				return nil
			}
		}
		if ctx.Err() != nil {
			c.log.Info("stopped")
			return nil
		}
		if fetchErr != nil {
			return fmt.Errorf("ingest: fetch from %v: %w", c.opts.Brokers, fetchErr)
		}
	}
}

// fill reads messages until the batch is full, BatchMaxWait has passed since its first message,
// or ctx ends.
func (c *Consumer) fill(ctx context.Context) (*batch, error) {
	b := newBatch()
	fetchCtx := ctx // until the first message; then bounded by the batch's deadline
	stopTimer := func() {}
	defer func() { stopTimer() }()
	for b.messages < c.opts.BatchMaxRows {
		m, err := c.reader.FetchMessage(fetchCtx)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return b, nil // the batch's time is up
			}
			return b, err
		}
		if b.messages == 0 {
			var cancel context.CancelFunc
			fetchCtx, cancel = context.WithTimeout(ctx, c.opts.BatchMaxWait)
			stopTimer = cancel
		}
		c.add(b, m)
	}
	return b, nil
}

// add decodes m into b: an event, a lifecycle event, or a dead letter.
func (c *Consumer) add(b *batch, m kafka.Message) {
	b.track(m)
	var err error
	switch {
	case len(m.Value) > c.opts.MaxMessageBytes:
		err = decodeErr(ReasonTooLarge, "%d bytes is over ingest.max_message_bytes (%d)", len(m.Value), c.opts.MaxMessageBytes)
	case m.Topic == c.opts.AuthEventsTopic:
		var ev Event
		if ev, err = DecodeEvent(m.Value, c.opts.Fingerprinter); err == nil {
			b.events = append(b.events, storedEvent{Event: ev, partition: int32(m.Partition), offset: m.Offset})
		}
	case m.Topic == c.opts.LifecycleTopic:
		var ev LifecycleEvent
		if ev, err = DecodeLifecycle(m.Value); err == nil {
			b.lifecycle = append(b.lifecycle, storedLifecycle{LifecycleEvent: ev, partition: int32(m.Partition), offset: m.Offset})
		}
	default:
		err = decodeErr(ReasonInvalidValue, "message from unexpected topic %q", m.Topic)
	}
	if err == nil {
		return
	}
	reason := ReasonInvalidValue
	var de *DecodeError
	if errors.As(err, &de) {
		reason = de.Reason
	}
	b.deadLetters = append(b.deadLetters, DeadLetter{
		Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset,
		Reason: reason, Error: err.Error(), Excerpt: Redact(m.Value), Size: len(m.Value),
	})
	c.log.Debug("dead letter", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", reason)
}

// store writes b to ClickHouse, retrying with capped backoff until it lands or ctx ends, then
// commits its offsets.
func (c *Consumer) store(ctx context.Context, b *batch) error {
	bo := backoff{min: 100 * time.Millisecond, max: 30 * time.Second}
	for {
		start := time.Now()
		err := c.writer.write(ctx, b)
		if err == nil {
			c.metrics.insertTime.Observe(time.Since(start).Seconds())
			break
		}
		c.failing.Store(true)
		c.metrics.retries.WithLabelValues("insert").Inc()
		wait := bo.next()
		c.log.Warn("store failed; fetching paused, retrying", "messages", b.messages, "retry_in", wait.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
	c.failing.Store(false)
	c.metrics.batchRows.Observe(float64(b.messages))
	c.count(b)

	bo.reset()
	for attempt := 1; ; attempt++ {
		err := c.reader.CommitMessages(ctx, b.commits()...)
		if err == nil {
			return nil
		}
		c.metrics.retries.WithLabelValues("commit").Inc()
		if attempt == 5 || ctx.Err() != nil {
			// The rows are stored; the next commit covers these offsets, and a re-read after a
			// restart is dropped by the deduplication token.
			c.log.Error("commit failed; offsets are committed with the next batch", "error", err)
			return nil
		}
		wait := bo.next()
		c.log.Warn("commit failed, retrying", "retry_in", wait.Round(time.Millisecond), "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func (c *Consumer) count(b *batch) {
	if n := len(b.events); n > 0 {
		c.metrics.messages.WithLabelValues(c.opts.AuthEventsTopic, "stored").Add(float64(n))
	}
	if n := len(b.lifecycle); n > 0 {
		c.metrics.messages.WithLabelValues(c.opts.LifecycleTopic, "stored").Add(float64(n))
	}
	for _, d := range b.deadLetters {
		c.metrics.messages.WithLabelValues(d.Topic, "dead_letter").Inc()
		c.metrics.deadLetters.WithLabelValues(d.Reason).Inc()
	}
}
