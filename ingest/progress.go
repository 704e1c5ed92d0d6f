package ingest

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const selectProgress = `SELECT table, topic, partition, max(max_offset)
FROM ingest_progress
WHERE topic IN (?, ?)
GROUP BY table, topic, partition`

// topicPartition is one assigned partition and the offset to read it from.
type topicPartition struct {
	topic     string
	partition int
	offset    int64
}

func (tp topicPartition) key() string { return fmt.Sprintf("%s/%d", tp.topic, tp.partition) }

// storedUpTo is, per table, the highest offset of one partition that is already stored there
// (-1: none). A message at or below it was stored by an earlier run and is skipped; an auth event
// is skipped when every table of events holds it, and otherwise stored in those that do not.
type storedUpTo struct {
	events                 [eventTables]int64
	lifecycle, deadLetters int64
}

// nothingStored is a partition none of whose messages is stored.
func nothingStored() storedUpTo {
	s := storedUpTo{lifecycle: -1, deadLetters: -1}
	for t := range s.events {
		s.events[t] = -1
	}
	return s
}

// eventsInAll is the highest offset every table of events holds.
func (s storedUpTo) eventsInAll() int64 {
	m := s.events[0]
	for _, o := range s.events[1:] {
		m = min(m, o)
	}
	return m
}

// highest is the highest offset any table holds.
func (s storedUpTo) highest() int64 {
	m := max(s.lifecycle, s.deadLetters)
	for _, o := range s.events {
		m = max(m, o)
	}
	return m
}

// eventTableNamed finds an event table by its name in ingest_progress.
func eventTableNamed(name string) (eventTable, bool) {
	for t, n := range eventTableNames {
		if n == name {
			return eventTable(t), true
		}
	}
	return 0, false
}

// progressStore reads ingest_progress, which materialized views keep up to date with every insert.
type progressStore struct {
	conn driver.Conn
}

func (p progressStore) load(ctx context.Context, partitions []topicPartition) (map[string]storedUpTo, error) {
	out := make(map[string]storedUpTo, len(partitions))
	topics := map[string]bool{}
	for _, tp := range partitions {
		out[tp.key()] = nothingStored()
		topics[tp.topic] = true
	}
	if len(partitions) == 0 {
		return out, nil
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	names = append(names, names[0]) // the query takes two topics
	rows, err := p.conn.Query(ctx, selectProgress, names[0], names[1])
	if err != nil {
		return nil, fmt.Errorf("ingest: read ingest_progress: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, topic string
		var partition int32
		var offset int64
		if err := rows.Scan(&table, &topic, &partition, &offset); err != nil {
			return nil, fmt.Errorf("ingest: read ingest_progress: %w", err)
		}
		key := topicPartition{topic: topic, partition: int(partition)}.key()
		s, ok := out[key]
		if !ok {
			continue
		}
		if t, ok := eventTableNamed(table); ok {
			s.events[t] = offset
		}
		switch table {
		case tableLifecycle:
			s.lifecycle = offset
		case tableDeadLetters:
			s.deadLetters = offset
		}
		out[key] = s
	}
	return out, rows.Err()
}
