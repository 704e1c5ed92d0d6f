package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/keywatch/keywatch/ingest/mapping"
	"github.com/keywatch/keywatch/rotation"
	"github.com/segmentio/kafka-go"

	"github.com/keywatch/keywatch/internal/backoff"
)

// chunkMax bounds the messages of one chunk; chunkWait bounds how long a chunk stays open.
const (
	chunkMax  = 2000
	chunkWait = 50 * time.Millisecond
)

const (
	// fetchMaxWait is how long the broker may hold a fetch while the partition has nothing new:
	// also how long a fetcher may take to notice that its context ended.
	fetchMaxWait = 250 * time.Millisecond
	// readTimeout bounds how long reading a fetch's response, or the rest of one, may stall before
	// the connection counts as broken.
	readTimeout = 10 * time.Second
	// readBufferSize is how much of a fetch response a fetcher's connection reads at once:
	// kafka-go reads 4 KiB at a time, a system call for every ten messages of a few hundred bytes.
	readBufferSize = 64 << 10
)

// bufferedDialer returns a copy of d (nil: kafka.DefaultDialer) whose connections read through a
// buffer of readBufferSize, under TLS when d has it.
func bufferedDialer(d *kafka.Dialer) *kafka.Dialer {
	if d == nil {
		d = kafka.DefaultDialer
	}
	buffered := *d
	dial := d.DialFunc
	if dial == nil { // as kafka.Dialer dials without DialFunc
		dial = (&net.Dialer{LocalAddr: d.LocalAddr, FallbackDelay: d.FallbackDelay, KeepAlive: d.KeepAlive}).DialContext
	}
	buffered.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, readBufferSize)}, nil
	}
	return &buffered
}

// bufferedConn is a connection whose reads go through r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// fetch reads one partition from tp.offset until ctx ends, decoding messages into chunks and
// handing them to out in offset order.
func (c *Consumer) fetch(ctx context.Context, tp topicPartition, stored storedUpTo, out chan<- *chunk) {
	r := &partitionReader{
		dialer: bufferedDialer(c.opts.Dialer), brokers: c.opts.Brokers, topic: tp.topic, partition: tp.partition,
		maxBytes: max(16<<20, 2*c.opts.MaxMessageBytes), offset: tp.offset, log: c.log,
		buf: make([]byte, 0, c.opts.MaxMessageBytes),
	}
	defer r.close()
	// The partition's events share one string for each key id, client id, user agent, route and
	// gateway, instead of each holding a copy while it waits to be stored (some 200 bytes).
	texts := mapping.NewTexts()
	lag := c.metrics.lag.WithLabelValues(tp.topic, strconv.Itoa(tp.partition))
	limit := min(chunkMax, c.opts.BatchMaxRows)
	wait := min(chunkWait, c.opts.BatchMaxWait)
	for ctx.Err() == nil {
		ch := c.chunks.get()
		ch.reset(tp.topic, tp.partition)
		ch.stored = stored.events
		err := c.fill(ctx, r, ch, limit, wait, stored, texts)
		if ch.messages > 0 {
			if l, ok := r.lag(); ok {
				lag.Set(float64(l))
			}
			out <- ch
		} else {
			c.chunks.put(ch)
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("fetch failed; retrying", "topic", tp.topic, "partition", tp.partition, "offset", r.offset, "err", err)
			backoff.Sleep(ctx, time.Second)
		}
	}
}

// fill reads into ch until it holds limit messages, wait has passed since its first message and
// the fetched messages are read, or ctx ends.
func (c *Consumer) fill(ctx context.Context, r *partitionReader, ch *chunk, limit int, wait time.Duration, stored storedUpTo, texts *mapping.Texts) error {
	r.resume()
	var closeAt time.Time // the chunk's deadline, once it has a message
	for ch.messages < limit {
		m, ok, err := r.next(ctx, closeAt, ch.messages == 0)
		if err != nil || !ok {
			return err
		}
		if ch.messages == 0 {
			ch.first, ch.firstTime, ch.readAt = m.Offset, m.Time, time.Now()
			closeAt = ch.readAt.Add(wait)
		}
		ch.last = m.Offset
		ch.messages++
		c.decode(ch, &m, stored, texts)
	}
	return nil
}

// partitionReader reads one partition straight from its leader, one fetch response at a time,
// handing on its messages as they are read off the connection. kafka.Reader does the same through
// a goroutine, a queue and a read deadline per message, which cost more than decoding one.
type partitionReader struct {
	dialer    *kafka.Dialer
	brokers   []string
	topic     string
	partition int
	maxBytes  int
	log       *slog.Logger
	// offset is the next message's: kafka.FirstOffset or kafka.LastOffset until connected.
	offset int64
	hwm    int64 // the partition's end as of the last fetch; 0 before one
	conn   *kafka.Conn
	batch  *kafka.Batch // the fetch response being read, if any
	// buf holds the value of the last message read, unless whole: messages up to its capacity
	// (ingest.max_message_bytes) are read into it rather than each into a new slice.
	buf []byte
	// large is set when the next message did not fit buf: it is read whole.
	large bool
}

// next returns the next message. It fetches more when the last fetch is read, unless until (zero:
// never) has passed; it returns ok false when it did not fetch or ctx ended. The message is whole
// (its own Value, and its Time) when whole is set; otherwise only Topic, Partition, Offset and
// Value are set, and Value is valid until the next call.
func (r *partitionReader) next(ctx context.Context, until time.Time, whole bool) (m kafka.Message, ok bool, err error) {
	for ctx.Err() == nil {
		if r.batch == nil {
			wait := fetchMaxWait
			if !until.IsZero() {
				if wait = min(wait, time.Until(until)); wait < time.Millisecond {
					return m, false, nil
				}
			}
			if err := r.connect(ctx); err != nil {
				return m, false, err
			}
			if err := r.conn.SetReadDeadline(time.Now().Add(wait + readTimeout)); err != nil {
				r.close()
				return m, false, fmt.Errorf("fetch from offset %d: %w", r.offset, err)
			}
			r.batch = r.conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: r.maxBytes, MaxWait: wait})
			r.hwm = r.batch.HighWaterMark()
		}
		if whole || r.large {
			if m, err = r.batch.ReadMessage(); err == nil {
				r.offset, r.large = m.Offset+1, false
				return m, true, nil
			}
		} else {
			var n int
			if n, err = r.batch.Read(r.buf[:0]); err == nil {
				// A response may start before the offset asked for: skip what was read.
				if offset := r.batch.Offset() - 1; offset >= r.offset {
					r.offset = offset + 1
					m = kafka.Message{Topic: r.topic, Partition: r.partition, Offset: offset, Value: r.buf[:n]}
					return m, true, nil
				}
				continue
			}
		}
		err = r.batch.Close() // nil at the end of the response
		r.batch = nil
		if errors.Is(err, io.ErrShortBuffer) {
			// Over ingest.max_message_bytes: fetch again from it, and read it whole, for its
			// dead letter. The connection stays as it is.
			r.large = true
			continue
		}
		if err != nil {
			// A new leader, a broken connection, or an offset out of range (retention removed
			// it, or the partition does not reach it yet): connect again, which finds the
			// leader and the offsets anew.
			r.close()
			return m, false, fmt.Errorf("fetch from offset %d: %w", r.offset, err)
		}
	}
	return m, false, nil
}

// resume gives the rest of a fetch response another readTimeout: the fetcher may have waited
// for the batch before to be stored.
func (r *partitionReader) resume() {
	if r.batch != nil {
		_ = r.conn.SetReadDeadline(time.Now().Add(readTimeout))
	}
}

// connect opens a connection to the partition's leader, unless one is open, and seeks to
// r.offset: to the first offset kept when retention removed it, or to the first or last offset
// for kafka.FirstOffset and kafka.LastOffset.
func (r *partitionReader) connect(ctx context.Context) error {
	if r.conn != nil {
		return nil
	}
	var errs []error
	for _, broker := range r.brokers {
		conn, err := r.dialer.DialLeader(ctx, "tcp", broker, r.topic, r.partition)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := conn.SetDeadline(time.Now().Add(readTimeout)); err != nil {
			conn.Close()
			return fmt.Errorf("connect to the leader of %s/%d: %w", r.topic, r.partition, err)
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			return fmt.Errorf("offsets of %s/%d: %w", r.topic, r.partition, err)
		}
		switch {
		case r.offset == kafka.FirstOffset:
			r.offset = first
		case r.offset == kafka.LastOffset:
			r.offset = last
		case r.offset < first:
			r.log.Warn("messages were removed before they were read (retention); reading from the first one kept",
				"topic", r.topic, "partition", r.partition, "offset", r.offset, "first_kept", first)
			r.offset = first
		case r.offset > last:
			conn.Close()
			return fmt.Errorf("%s/%d ends at offset %d, before offset %d", r.topic, r.partition, last, r.offset)
		}
		if _, err := conn.Seek(r.offset, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
			conn.Close()
			return fmt.Errorf("seek %s/%d to offset %d: %w", r.topic, r.partition, r.offset, err)
		}
		_ = conn.SetDeadline(time.Time{})
		r.conn = conn
		return nil
	}
	return fmt.Errorf("connect to the leader of %s/%d through %v: %w", r.topic, r.partition, r.brokers, errors.Join(errs...))
}

// lag returns how many messages of the partition are not read yet, as of the last fetch.
func (r *partitionReader) lag() (int64, bool) {
	if r.hwm <= 0 || r.offset < 0 {
		return 0, false
	}
	return max(r.hwm-r.offset, 0), true
}

// close closes the connection, if open; connect opens another.
func (r *partitionReader) close() {
	if r.batch != nil {
		_ = r.batch.Close()
		r.batch = nil
	}
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
}

// decode turns m into an event, a lifecycle event or a dead letter of ch, unless an earlier run
// already stored it. Events share texts' strings.
func (c *Consumer) decode(ch *chunk, m *kafka.Message, stored storedUpTo, texts *mapping.Texts) {
	var err error
	switch {
	case len(m.Value) > c.opts.MaxMessageBytes:
		err = decodeErr(ReasonTooLarge, "%d bytes is over ingest.max_message_bytes (%d)", len(m.Value), c.opts.MaxMessageBytes)
	case m.Topic == c.opts.AuthEventsTopic:
		var ev Event
		if ev, err = c.opts.Decoder.event(m.Value, ch.readAt, texts); err == nil {
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
