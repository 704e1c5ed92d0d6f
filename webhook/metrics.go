package webhook

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the notification webhooks' Prometheus metrics.
type Metrics struct {
	deliveries *prometheus.CounterVec
	queued     *prometheus.GaugeVec
}

// NewMetrics registers the notification webhooks' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_webhook_deliveries_total",
			Help: "Notification webhook attempts by endpoint and result: delivered (2xx), retry (5xx, 408, 429 or a network error; tried again), failed (given up: another answer, or max_age passed).",
		}, []string{"endpoint", "result"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_webhooks_queued", Help: "Notification webhook events not delivered yet, by endpoint.",
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.deliveries, m.queued)
	return m
}

func (m *Metrics) delivery(endpoint, result string) {
	if m != nil {
		m.deliveries.WithLabelValues(endpoint, result).Inc()
	}
}

func (m *Metrics) setQueued(per map[string]int) {
	if m == nil {
		return
	}
	m.queued.Reset()
	for ep, n := range per {
		m.queued.WithLabelValues(ep).Set(float64(n))
	}
}
