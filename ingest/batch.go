package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/keywatch/keywatch/rotation"
)

const (
	insertAuthEvents = `INSERT INTO auth_events (ts, key_id, key_fingerprint, client_id, outcome, status, ip,
	asn, as_org, country, user_agent, method, route, request_id, gateway, src_topic, src_partition, src_offset)`
	insertDeadLetters = `INSERT INTO dead_letters (topic, partition, offset, reason, error, excerpt, size)`
)

// Tables a message can land in; ingest_progress names them the same way.
const (
	tableAuthEvents  = "auth_events"
	tableLifecycle   = "key_lifecycle_events"
	tableDeadLetters = "dead_letters"
)

// insertBlockRows is how many rows an insert sends at most in one block. ClickHouse squashes the
// blocks of one insert into one part (see squashRows), so the block size does not change what is
// stored or how it is deduplicated; it bounds the memory clickhouse-go holds for the insert (the
// rows column by column, then encoded and then compressed) to a few megabytes instead of the whole
// batch, and its column buffers are reused from block to block instead of growing with the batch.
const insertBlockRows = 4096

// squashRows is the min_insert_block_size_rows of every insert, with min_insert_block_size_bytes
// 0: ClickHouse squashes an insert's blocks until they hold this many rows, more than a batch or
// a rollup of it holds (ingest.batch_max_rows is at most a million, and a batch ends within a
// chunk of it), so that each insert is one part, atomic, as the delivery guarantee needs.
const squashRows = 2_000_000

// outcomeCodes are auth_events.outcome's Enum8 values.
var outcomeCodes = map[Outcome]int8{
	OutcomeOK: 1, OutcomeInvalidKey: 2, OutcomeExpiredKey: 3, OutcomeRevokedKey: 4,
	OutcomeForbidden: 5, OutcomeRateLimited: 6, OutcomeError: 7,
}

// eventColumns holds auth events column by column, the shape clickhouse-go appends fastest.
type eventColumns struct {
	ts                                                []int64 // milliseconds since the epoch
	keyID, keyFP, clientID                            []string
	outcome                                           []int8
	status                                            []uint16
	ip                                                []netip.Addr
	asn                                               []uint32
	asOrg, country                                    []string
	userAgent, method, route, requestID, gateway, src []string
	partition                                         []int32
	offset                                            []int64
}

func (c *eventColumns) add(e *Event, topic string, partition int32, offset int64) {
	ip := netip.IPv6Unspecified()
	if e.IP.IsValid() {
		ip = netip.AddrFrom16(e.IP.As16()) // as stored: an IPv4 address IPv4-mapped
	}
	c.ts = append(c.ts, e.TS.UnixMilli())
	c.keyID = append(c.keyID, e.KeyID)
	c.keyFP = append(c.keyFP, e.KeyFingerprint)
	c.clientID = append(c.clientID, e.ClientID)
	c.outcome = append(c.outcome, outcomeCodes[e.Outcome])
	c.status = append(c.status, e.Status)
	c.ip = append(c.ip, ip)
	c.asn = append(c.asn, e.Network.ASN)
	c.asOrg = append(c.asOrg, e.Network.ASOrg)
	c.country = append(c.country, e.Network.Country)
	c.userAgent = append(c.userAgent, e.UserAgent)
	c.method = append(c.method, e.Method)
	c.route = append(c.route, e.Route)
	c.requestID = append(c.requestID, e.RequestID)
	c.gateway = append(c.gateway, e.Gateway)
	c.src = append(c.src, topic)
	c.partition = append(c.partition, partition)
	c.offset = append(c.offset, offset)
}

func (c *eventColumns) len() int { return len(c.ts) }

// after returns the events whose offset is above offset, in a copy.
func (c *eventColumns) after(offset int64) *eventColumns {
	out := &eventColumns{}
	for i := range c.len() {
		if c.offset[i] <= offset {
			continue
		}
		out.ts, out.keyID, out.keyFP, out.clientID = append(out.ts, c.ts[i]), append(out.keyID, c.keyID[i]), append(out.keyFP, c.keyFP[i]), append(out.clientID, c.clientID[i])
		out.outcome, out.status, out.ip = append(out.outcome, c.outcome[i]), append(out.status, c.status[i]), append(out.ip, c.ip[i])
		out.asn, out.asOrg, out.country = append(out.asn, c.asn[i]), append(out.asOrg, c.asOrg[i]), append(out.country, c.country[i])
		out.userAgent, out.method, out.route = append(out.userAgent, c.userAgent[i]), append(out.method, c.method[i]), append(out.route, c.route[i])
		out.requestID, out.gateway, out.src = append(out.requestID, c.requestID[i]), append(out.gateway, c.gateway[i]), append(out.src, c.src[i])
		out.partition, out.offset = append(out.partition, c.partition[i]), append(out.offset, c.offset[i])
	}
	return out
}

// columns returns the slices in the order of insertAuthEvents.
func (c *eventColumns) columns() []any {
	return []any{c.ts, c.keyID, c.keyFP, c.clientID, c.outcome, c.status, c.ip, c.asn, c.asOrg, c.country,
		c.userAgent, c.method, c.route, c.requestID, c.gateway, c.src, c.partition, c.offset}
}

// drop lets go of the text the columns hold, keeping their capacity.
func (c *eventColumns) drop() {
	for _, col := range [][]string{c.keyID, c.keyFP, c.clientID, c.asOrg, c.country, c.userAgent, c.method, c.route, c.requestID, c.gateway, c.src} {
		clear(col)
	}
	c.reset()
}

func (c *eventColumns) reset() {
	c.ts, c.keyID, c.keyFP, c.clientID = c.ts[:0], c.keyID[:0], c.keyFP[:0], c.clientID[:0]
	c.outcome, c.status, c.ip, c.userAgent = c.outcome[:0], c.status[:0], c.ip[:0], c.userAgent[:0]
	c.asn, c.asOrg, c.country = c.asn[:0], c.asOrg[:0], c.country[:0]
	c.method, c.route, c.requestID, c.gateway = c.method[:0], c.route[:0], c.requestID[:0], c.gateway[:0]
	c.src, c.partition, c.offset = c.src[:0], c.partition[:0], c.offset[:0]
}

type storedLifecycle struct {
	rotation.Event
	topic     string
	partition int32
	offset    int64
}

// DeadLetter is a message that could not become an event; Decoder.DeadLetter makes one.
type DeadLetter struct {
	Topic     string
	Partition int32
	Offset    int64
	Reason    string // one of the Reason constants
	Error     string // redacted and escaped: no secret, no raw control or bidi character
	Excerpt   string // the same, and at most excerptMax bytes
	Size      int
}

// chunk is what one partition's fetcher hands on: decoded messages from one contiguous offset
// range, [first, last], of one partition. Messages already stored are counted in the range but
// not in the rows.
type chunk struct {
	topic       string
	partition   int
	first, last int64
	firstTime   time.Time // the first message's timestamp, to tell a recreated topic from the old
	readAt      time.Time // when the first message was read: "now" for the timestamp limits
	messages    int
	skipped     int // already stored before this process read them
	// stored is, per event table, the highest offset of this partition it held when the chunk was
	// read (-1: none): an event is stored in the tables below whose offset it is.
	stored      [eventTables]int64
	events      eventColumns
	lifecycle   []storedLifecycle
	deadLetters []DeadLetter
}

func (c *chunk) reset(topic string, partition int) {
	c.topic, c.partition, c.messages, c.skipped = topic, partition, 0, 0
	c.events.reset()
	c.lifecycle, c.deadLetters = c.lifecycle[:0], c.deadLetters[:0]
}

// chunkPool keeps chunks that were stored, with their columns' capacity, for the fetchers to fill
// again. Unlike a sync.Pool, which empties at every garbage collection, it keeps them: a chunk's
// columns would otherwise grow anew, row by row, for most chunks. It keeps as many as one batch
// per pipeline holds: the chunks of the batch just stored, for the batch being gathered.
type chunkPool struct {
	free chan *chunk
}

func newChunkPool(batchMaxRows, pipelines int) chunkPool {
	perBatch := (max(batchMaxRows, 1)+chunkMax-1)/chunkMax + 1
	return chunkPool{free: make(chan *chunk, perBatch*max(pipelines, 1))}
}

// get returns a kept chunk, or a new one when none is kept.
func (p chunkPool) get() *chunk {
	select {
	case c := <-p.free:
		return c
	default:
		return new(chunk)
	}
}

// put keeps c for get, unless the pool is full, without the messages it held.
func (p chunkPool) put(c *chunk) {
	c.events.drop()
	clear(c.lifecycle)
	clear(c.deadLetters)
	select {
	case p.free <- c:
	default:
	}
}

// batch is what one insert round stores: chunks in the order their partitions produced them.
type batch struct {
	chunks   []*chunk
	messages int
	started  time.Time // the first chunk arrived
	gathered time.Time // the batch was complete
}

func (b *batch) rows(table string) int {
	n := 0
	for _, c := range b.chunks {
		switch table {
		case tableAuthEvents:
			n += c.events.len()
		case tableLifecycle:
			n += len(c.lifecycle)
		case tableDeadLetters:
			n += len(c.deadLetters)
		}
	}
	return n
}

// partitionKey is one partition of one topic.
type partitionKey struct {
	topic     string
	partition int
}

// offsetRange is the offsets [first, last] of one partition that batches hold, and the time of
// its first message (which tells a recreated topic from the old one).
type offsetRange struct {
	first, last int64
	at          time.Time
}

// offsetRanges are the offsets of each partition that one or more consecutive batches hold.
type offsetRanges map[partitionKey]offsetRange

// ranges returns the offsets b holds, per partition.
func (b *batch) ranges() offsetRanges {
	out := offsetRanges{}
	for _, c := range b.chunks {
		out.extend(partitionKey{c.topic, c.partition}, offsetRange{c.first, c.last, c.firstTime})
	}
	return out
}

// extend adds r, which follows what o holds of partition k.
func (o offsetRanges) extend(k partitionKey, r offsetRange) {
	if have, ok := o[k]; ok {
		have.last = max(have.last, r.last)
		o[k] = have
		return
	}
	o[k] = r
}

// add adds the ranges of later batches.
func (o offsetRanges) add(later offsetRanges) {
	for k, r := range later {
		o.extend(k, r)
	}
}

// commits returns, per topic and partition, the offset to commit: one past the last held.
func (o offsetRanges) commits() map[string]map[int]int64 {
	out := map[string]map[int]int64{}
	for k, r := range o {
		if out[k.topic] == nil {
			out[k.topic] = map[int]int64{}
		}
		out[k.topic][k.partition] = r.last + 1
	}
	return out
}

// token names the ranges ("topic:partition:first-last@ms", sorted), so that a retried insert of
// what did land is dropped by ClickHouse, materialized views included.
func (o offsetRanges) token() string {
	parts := make([]string, 0, len(o))
	for k, r := range o {
		parts = append(parts, fmt.Sprintf("%s:%d:%d-%d@%d", k.topic, k.partition, r.first, r.last, r.at.UnixMilli()))
	}
	slices.Sort(parts)
	tok := strings.Join(parts, ",")
	if len(tok) > 200 {
		sum := sha256.Sum256([]byte(tok))
		tok = "sha256:" + hex.EncodeToString(sum[:])
	}
	return tok
}

// dedupToken names the batch by its offset ranges (offsetRanges.token).
func (b *batch) dedupToken() string { return b.ranges().token() }

// writer stores batches in ClickHouse through the native batch API, column by column.
type writer struct {
	conn driver.Conn
}

// insertSettings are the settings of every insert, deduplicated by token.
func insertSettings(ctx context.Context, token string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token":                         token,
		"deduplicate_blocks_in_dependent_materialized_views": 1,
		// LowCardinality columns travel as plain strings and ClickHouse builds their dictionaries:
		// clickhouse-go builds them through reflection and an interface-keyed map, which cost
		// keywatch about 0.6 s of CPU per million events over the nine such columns of
		// auth_events alone (BenchmarkConsumer, 2026-12-06).
		"low_cardinality_allow_in_native_format": 0,
		"min_insert_block_size_rows":             squashRows,
		"min_insert_block_size_bytes":            0,
	}))
}

// write inserts b's auth events, lifecycle events and dead letters, each insert carrying the
// batch's deduplication token. Its events' rollups are written apart (writeRollups).
func (w *writer) write(ctx context.Context, b *batch) error {
	ctx = insertSettings(ctx, b.dedupToken())
	var events []*eventColumns
	n := 0
	for _, c := range b.chunks {
		cols := &c.events
		if c.stored[tableIndexAuthEvents] >= c.first { // read again after a restart: some are stored
			cols = c.events.after(c.stored[tableIndexAuthEvents])
		}
		if cols.len() > 0 {
			events, n = append(events, cols), n+cols.len()
		}
	}
	if n > 0 {
		if err := w.send(ctx, insertAuthEvents, func(bt driver.Batch) error {
			for _, cols := range events {
				for i, col := range cols.columns() {
					if err := bt.Column(i).Append(col); err != nil {
						return fmt.Errorf("column %d: %w", i, err)
					}
				}
				if bt.Rows() >= insertBlockRows {
					if err := bt.Flush(); err != nil {
						return fmt.Errorf("send a block of %d rows: %w", bt.Rows(), err)
					}
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("ingest: insert %d auth events: %w", n, err)
		}
	}
	if n := b.rows(tableLifecycle); n > 0 {
		if err := w.send(ctx, insertLifecycle, func(bt driver.Batch) error {
			for _, c := range b.chunks {
				for _, e := range c.lifecycle {
					if err := bt.Append(lifecycleRow(e.Event, e.topic, e.partition, e.offset)...); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("ingest: insert %d lifecycle events: %w", n, err)
		}
	}
	if n := b.rows(tableDeadLetters); n > 0 {
		if err := w.send(ctx, insertDeadLetters, func(bt driver.Batch) error {
			for _, c := range b.chunks {
				for _, d := range c.deadLetters {
					if err := bt.Append(d.Topic, d.Partition, d.Offset, d.Reason, d.Error, d.Excerpt, uint32(d.Size)); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("ingest: insert %d dead letters: %w", n, err)
		}
	}
	return nil
}

// writeRollups inserts the rollups' rows, each insert carrying token: that of the batches whose
// events they aggregate.
func (w *writer) writeRollups(ctx context.Context, token string, rollups []rollupInsert) error {
	ctx = insertSettings(ctx, token)
	for _, r := range rollups {
		if r.total == 0 {
			continue
		}
		if err := w.send(ctx, r.query, func(bt driver.Batch) error {
			return appendInBlocks(bt, r.columns, r.total)
		}); err != nil {
			return fmt.Errorf("ingest: insert %d rows into %s: %w", r.rows, eventTableNames[r.table], err)
		}
	}
	return nil
}

// appendInBlocks appends columns, slices of rows values each, to bt, sending them insertBlockRows
// rows at a time but for the last block, which is left for Send.
func appendInBlocks(bt driver.Batch, columns []any, rows int) error {
	for from := 0; from < rows; from += insertBlockRows {
		to := min(from+insertBlockRows, rows)
		for i, col := range columns {
			if from > 0 || to < rows {
				col = reflect.ValueOf(col).Slice(from, to).Interface()
			}
			if err := bt.Column(i).Append(col); err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
		if to < rows {
			if err := bt.Flush(); err != nil {
				return fmt.Errorf("send rows %d to %d: %w", from, to, err)
			}
		}
	}
	return nil
}

func (w *writer) send(ctx context.Context, query string, fill func(driver.Batch) error) error {
	bt, err := w.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	defer bt.Abort()
	if err := fill(bt); err != nil {
		return err
	}
	return bt.Send()
}
