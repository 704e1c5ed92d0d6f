package ingest

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the ingest path's Prometheus series.
type Metrics struct {
	messages    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batchRows   prometheus.Histogram
	insertTime  prometheus.Histogram
	retries     *prometheus.CounterVec
	lag         *prometheus.GaugeVec
}

// NewMetrics creates the series and registers them with reg (none when reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_ingest_messages_total",
			Help: "Kafka messages ingested, by topic and result (stored, dead_letter, or already_stored by an earlier run and skipped).",
		}, []string{"topic", "result"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_ingest_dead_letters_total",
			Help: "Messages written to dead_letters, by reason.",
		}, []string{"reason"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keywatch_ingest_batch_messages",
			Help:    "Messages per stored batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		insertTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keywatch_ingest_insert_seconds",
			Help:    "Time to store one batch in ClickHouse, retries excluded.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_ingest_retries_total",
			Help: "Retries after a failed operation (insert or commit).",
		}, []string{"operation"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_ingest_partition_lag",
			Help: "Messages between the last one fetched and the partition's end, per assigned partition.",
		}, []string{"topic", "partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.deadLetters, m.batchRows, m.insertTime, m.retries, m.lag)
	}
	return m
}
