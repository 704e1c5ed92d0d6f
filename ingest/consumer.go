package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/backoff"
)

// Options configure a Consumer.
type Options struct {
	Brokers []string
	// Dialer opens the group's and the fetchers' connections to the brokers, and Transport
	// serves the requests sent through kafka.Client (end offsets); set both, from one
	// broker.Connector, so that every connection has the brokers' TLS and SASL. nil: plaintext
	// without SASL.
	Dialer          *kafka.Dialer
	Transport       kafka.RoundTripper
	GroupID         string
	AuthEventsTopic string
	LifecycleTopic  string
	// StartFrom is where a group without committed offsets starts: "earliest" or "latest".
	StartFrom string
	// SessionTimeout is how long the group waits for a member that stopped heartbeating.
	SessionTimeout time.Duration
	BatchMaxRows   int
	BatchMaxWait   time.Duration
	// RollupInterval is how often the rollups of the batches stored meanwhile are stored, and
	// their offsets committed: each rollup insert costs ClickHouse far more than its rows, so
	// several batches share one. 0: each batch has its own.
	RollupInterval time.Duration
	// InsertConcurrency is how many batches, of disjoint partitions, are stored at once.
	InsertConcurrency int
	MaxMessageBytes   int
	// ShutdownGrace bounds storing the last batch after the context ends; what is not stored by
	// then is left uncommitted and read again on the next start.
	ShutdownGrace time.Duration
	Decoder       *Decoder
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Consumer is one member of the consumer group on both topics. For every generation of the group
// it fetches and decodes each assigned partition concurrently, gathers what they decode into
// batches, and stores one batch at a time, committing its offsets only after ClickHouse has
// acknowledged every row of it. Messages that an earlier member stored but did not commit are
// recognised through ingest_progress and skipped, so each event is stored once.
type Consumer struct {
	opts     Options
	writer   writer
	progress progressStore
	log      *slog.Logger
	metrics  *Metrics
	chunks   chunkPool
	failing  atomic.Bool
	assigned atomic.Bool
	commitMu sync.Mutex // one offset commit at a time on the generation's connection
}

// NewConsumer prepares a consumer; nothing is fetched before Run.
func NewConsumer(opts Options, conn driver.Conn) *Consumer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.InsertConcurrency < 1 {
		opts.InsertConcurrency = 1
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 10 * time.Second
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	return &Consumer{
		opts: opts, writer: writer{conn: conn}, progress: progressStore{conn: conn},
		log: opts.Logger.With("component", "ingest"), metrics: opts.Metrics,
		chunks: newChunkPool(opts.BatchMaxRows, opts.InsertConcurrency),
	}
}

// Failing reports whether the last attempt to store a batch failed.
func (c *Consumer) Failing() bool { return c.failing.Load() }

// Assigned reports whether the consumer is a member of a current group generation.
func (c *Consumer) Assigned() bool { return c.assigned.Load() }

// Run consumes until ctx ends, then stores the batch in flight (within ShutdownGrace), commits
// it, leaves the group and returns nil. Broker outages are retried; it returns an error only
// when the group cannot be set up at all.
func (c *Consumer) Run(ctx context.Context) error {
	start := kafka.FirstOffset
	if c.opts.StartFrom == "latest" {
		start = kafka.LastOffset
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.opts.GroupID,
		Brokers:           c.opts.Brokers,
		Topics:            []string{c.opts.AuthEventsTopic, c.opts.LifecycleTopic},
		Dialer:            c.opts.Dialer,
		StartOffset:       start,
		HeartbeatInterval: time.Second,
		SessionTimeout:    c.opts.SessionTimeout,
		RebalanceTimeout:  30 * time.Second,
		JoinGroupBackoff:  time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			c.log.Warn("kafka: " + fmt.Sprintf(msg, args...))
		}),
	})
	if err != nil {
		return fmt.Errorf("ingest: consumer group %s on %v: %w", c.opts.GroupID, c.opts.Brokers, err)
	}
	defer group.Close()
	c.log.Info("consuming", "brokers", c.opts.Brokers, "group", c.opts.GroupID,
		"topics", []string{c.opts.AuthEventsTopic, c.opts.LifecycleTopic})
	bo := backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Jitter: backoff.Equal}.Waits()
	for ctx.Err() == nil {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			wait := bo.Next()
			c.log.Warn("cannot join the consumer group; retrying", "group", c.opts.GroupID, "retry_in", wait.Round(time.Millisecond), "err", err)
			backoff.Sleep(ctx, wait)
			continue
		}
		bo.Reset()
		done := make(chan struct{})
		gen.Start(func(genCtx context.Context) {
			defer close(done)
			c.assigned.Store(true)
			defer c.assigned.Store(false)
			c.runGeneration(ctx, genCtx, gen)
		})
		<-done
	}
	c.log.Info("stopped")
	return nil
}

// runGeneration consumes the partitions gen assigns until ctx (shutdown) or genCtx (rebalance)
// ends, then stores and commits what was fetched and returns, letting the group move on.
func (c *Consumer) runGeneration(ctx, genCtx context.Context, gen *kafka.Generation) {
	log := c.log.With("generation", gen.ID)
	stop, cancel := context.WithCancel(genCtx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-stop.Done():
		}
	}()

	var partitions []topicPartition
	for topic, assigned := range gen.Assignments {
		for _, a := range assigned {
			partitions = append(partitions, topicPartition{topic: topic, partition: a.ID, offset: a.Offset})
		}
	}
	log.Info("partitions assigned", "count", len(partitions))
	if len(partitions) == 0 {
		<-stop.Done() // more members than partitions: stay in the group, idle, until the next rebalance
		return
	}
	stored, err := c.loadProgress(stop, partitions)
	if err != nil {
		return // stopped while ClickHouse was unreachable: nothing fetched, nothing to store
	}

	// Partitions are dealt to InsertConcurrency pipelines, each fetching its partitions and storing
	// one batch at a time: a partition's batches stay in order, as ingest_progress needs.
	shards := min(c.opts.InsertConcurrency, len(partitions))
	var pipelines sync.WaitGroup
	for shard := range shards {
		var mine []topicPartition
		for i := shard; i < len(partitions); i += shards {
			mine = append(mine, partitions[i])
		}
		pipelines.Add(1)
		go func() {
			defer pipelines.Done()
			c.pipeline(ctx, stop, gen, mine, stored)
		}()
	}
	pipelines.Wait()
	log.Info("generation ended")
}

// pipeline fetches partitions until stop ends and stores what they yield until all is stored.
func (c *Consumer) pipeline(ctx, stop context.Context, gen *kafka.Generation, partitions []topicPartition, stored map[string]storedUpTo) {
	chunks := make(chan *chunk, len(partitions)+1)
	var fetchers sync.WaitGroup
	for _, tp := range partitions {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			c.fetch(stop, tp, stored[tp.key()], chunks)
		}()
	}
	go func() {
		fetchers.Wait()
		close(chunks)
	}()
	c.storeBatches(ctx, gen, chunks)
}

// loadProgress asks ClickHouse what is already stored of the partitions, retrying until it
// answers or ctx ends.
func (c *Consumer) loadProgress(ctx context.Context, partitions []topicPartition) (map[string]storedUpTo, error) {
	bo := backoff.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Jitter: backoff.Equal}.Waits()
	for {
		stored, err := c.progress.load(ctx, partitions)
		if err == nil {
			err = c.dropStaleProgress(ctx, partitions, stored)
		}
		if err == nil {
			return stored, nil
		}
		c.failing.Store(true)
		wait := bo.Next()
		c.log.Warn("cannot read ingest progress; retrying", "retry_in", wait.Round(time.Millisecond), "err", err)
		if !backoff.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// dropStaleProgress forgets what ingest_progress says of a partition that now ends at or before
// that offset: the topic was deleted and created again (or truncated), so its offsets count anew
// and none of its messages is stored yet.
func (c *Consumer) dropStaleProgress(ctx context.Context, partitions []topicPartition, stored map[string]storedUpTo) error {
	reqs := map[string][]kafka.OffsetRequest{}
	for _, tp := range partitions {
		reqs[tp.topic] = append(reqs[tp.topic], kafka.LastOffsetOf(tp.partition))
	}
	client := &kafka.Client{Addr: kafka.TCP(c.opts.Brokers...), Timeout: 10 * time.Second, Transport: c.opts.Transport}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return fmt.Errorf("ingest: end offsets: %w", err)
	}
	for topic, offsets := range ends.Topics {
		for _, p := range offsets {
			if p.Error != nil {
				return fmt.Errorf("ingest: end offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			key := topicPartition{topic: topic, partition: p.Partition}.key()
			s := stored[key]
			if highest := s.highest(); highest >= p.LastOffset && highest >= 0 {
				c.log.Warn("ingest_progress says offsets beyond this partition's end are stored: the topic was recreated or truncated; reading it all",
					"topic", topic, "partition", p.Partition, "stored_up_to", highest, "end_offset", p.LastOffset)
				stored[key] = nothingStored()
			}
		}
	}
	return nil
}

// storeBatches gathers chunks into batches and stores them one at a time, while the fetchers go
// on filling the next batch. It returns when chunks is closed and everything in it was stored
// (or, on shutdown, abandoned after ShutdownGrace).
func (c *Consumer) storeBatches(ctx context.Context, gen *kafka.Generation, chunks <-chan *chunk) {
	ready := make(chan *batch) // one batch is gathered while one is stored: bounded memory
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.storeLoop(ctx, gen, ready)
	}()

	b := &batch{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(b.chunks) > 0 {
			b.gathered = time.Now()
			ready <- b
			b = &batch{}
		}
		timer.Stop()
	}
	for open := true; open; {
		select {
		case ch, ok := <-chunks:
			if !ok {
				open = false
				break
			}
			if len(b.chunks) == 0 {
				b.started = time.Now()
				timer.Reset(c.opts.BatchMaxWait)
			}
			b.chunks = append(b.chunks, ch)
			b.messages += ch.messages
			if b.messages >= c.opts.BatchMaxRows {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
	flush()
	close(ready)
	<-done
}

// storeLoop stores the batches of ready as they come, and the rollups of the batches stored since
// the last rollups every RollupInterval (and when ready closes), committing their offsets then.
// After a batch could not be stored (shutdown), it stores the rollups of those before it and
// drains the rest: later batches must not be stored past a gap.
func (c *Consumer) storeLoop(ctx context.Context, gen *kafka.Generation, ready <-chan *batch) {
	// Stores outlive ctx by ShutdownGrace, so that what is in flight can land after shutdown began.
	storeCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(c.opts.ShutdownGrace, cancel) })
	defer stopGrace()
	p := pendingRollups{rows: newRollupRows(), ranges: offsetRanges{}}
	due := time.NewTimer(time.Hour)
	due.Stop()
	abandoned := false
	flush := func() {
		due.Stop()
		if !abandoned && !c.storeRollups(storeCtx, gen, &p) {
			abandoned = true
		}
	}
	for {
		select {
		case b, ok := <-ready:
			if !ok {
				flush()
				return
			}
			if !abandoned {
				if c.store(storeCtx, b) {
					if p.batches == 0 {
						p.since = time.Now()
						due.Reset(c.opts.RollupInterval)
					}
					p.add(b)
				} else {
					flush()
					abandoned = true
				}
			}
			for _, ch := range b.chunks {
				c.chunks.put(ch)
			}
			if !abandoned && p.batches > 0 && time.Since(p.since) >= c.opts.RollupInterval {
				flush()
			}
		case <-due.C:
			flush()
		}
	}
}

// pendingRollups aggregates the events of the batches stored since the last rollups were.
type pendingRollups struct {
	rows     *rollupRows
	ranges   offsetRanges
	batches  int
	messages int
	since    time.Time // the first of them was stored
}

func (p *pendingRollups) add(b *batch) {
	p.rows.addBatch(b)
	p.ranges.add(b.ranges())
	p.batches++
	p.messages += b.messages
}

func (p *pendingRollups) reset() {
	p.rows.reset()
	p.ranges = offsetRanges{}
	p.batches, p.messages = 0, 0
}

// retry runs write with capped backoff until it succeeds, and reports whether it did: it gives
// up once storeCtx ends (ShutdownGrace after shutdown). While it retries, fetching stalls on the
// bounded channels.
func (c *Consumer) retry(storeCtx context.Context, what string, messages int, write func(context.Context) error) bool {
	bo := backoff.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: backoff.Equal}.Waits()
	for {
		start := time.Now()
		err := write(storeCtx)
		if err == nil {
			c.metrics.insertTime.Observe(time.Since(start).Seconds())
			c.failing.Store(false)
			return true
		}
		c.failing.Store(true)
		c.metrics.retries.WithLabelValues("insert").Inc()
		wait := bo.Next()
		c.log.Warn("store failed; fetching paused, retrying", "what", what, "messages", messages, "retry_in", wait.Round(time.Millisecond), "err", err)
		if !backoff.Sleep(storeCtx, wait) {
			c.log.Warn("abandoned uncommitted at shutdown; read again on the next start", "what", what, "messages", messages, "err", err)
			return false
		}
	}
}

// store writes b's events, lifecycle events and dead letters, and reports whether they landed;
// its offsets are committed with the rollups of its events (storeRollups).
func (c *Consumer) store(storeCtx context.Context, b *batch) bool {
	start := time.Now()
	if !c.retry(storeCtx, "batch", b.messages, func(ctx context.Context) error { return c.writer.write(ctx, b) }) {
		return false
	}
	c.metrics.batchRows.Observe(float64(b.messages))
	c.count(b)
	c.log.Debug("batch stored", "messages", b.messages, "chunks", len(b.chunks),
		"gather_ms", b.gathered.Sub(b.started).Milliseconds(), "store_ms", time.Since(start).Milliseconds())
	return true
}

// storeRollups writes the rollups of the batches p holds, then commits their offsets, and reports
// whether the rollups landed (if not, nothing of p is committed, and it is read again on the next
// start: ingest_progress tells which tables hold what).
func (c *Consumer) storeRollups(storeCtx context.Context, gen *kafka.Generation, p *pendingRollups) bool {
	if p.batches == 0 {
		return true
	}
	defer p.reset()
	start := time.Now()
	inserts, token := p.rows.inserts(), p.ranges.token() // once: every attempt inserts the same rows
	if !c.retry(storeCtx, "rollups", p.messages, func(ctx context.Context) error { return c.writer.writeRollups(ctx, token, inserts) }) {
		return false
	}
	inserted := time.Now()
	defer func() {
		c.log.Debug("rollups stored", "batches", p.batches, "messages", p.messages,
			"insert_ms", inserted.Sub(start).Milliseconds(), "commit_ms", time.Since(inserted).Milliseconds())
	}()

	// Every table holds the batches: if a commit fails, the next one covers these offsets, and
	// whoever reads them again skips them through ingest_progress.
	commits := p.ranges.commits()
	for attempt := 1; ; attempt++ {
		c.commitMu.Lock()
		err := gen.CommitOffsets(commits)
		c.commitMu.Unlock()
		if err == nil {
			return true
		}
		c.metrics.retries.WithLabelValues("commit").Inc()
		if attempt == 3 {
			c.log.Warn("commit failed; the next commit covers these offsets", "err", err)
			return true
		}
		backoff.Sleep(storeCtx, backoff.Policy{Initial: 200 * time.Millisecond, Max: time.Second}.Wait(attempt))
	}
}

func (c *Consumer) count(b *batch) {
	for _, ch := range b.chunks {
		if n := ch.events.len(); n > 0 {
			c.metrics.messages.WithLabelValues(ch.topic, "stored").Add(float64(n))
		}
		if n := len(ch.lifecycle); n > 0 {
			c.metrics.messages.WithLabelValues(ch.topic, "stored").Add(float64(n))
		}
		if ch.skipped > 0 {
			c.metrics.messages.WithLabelValues(ch.topic, "already_stored").Add(float64(ch.skipped))
		}
		for _, d := range ch.deadLetters {
			c.metrics.messages.WithLabelValues(d.Topic, "dead_letter").Inc()
			c.metrics.deadLetters.WithLabelValues(d.Reason).Inc()
		}
	}
}
