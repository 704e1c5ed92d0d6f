package alerting

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are alerting's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	alerts      *prometheus.GaugeVec
	evaluations *prometheus.CounterVec
	duration    prometheus.Histogram
}

// NewMetrics registers alerting's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_alerts",
			Help: "Alerts by state and detector: pending and firing now; resolved in the last 24 hours.",
		}, []string{"state", "detector"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_alerting_evaluations_total", Help: "Alert evaluation passes by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keywatch_alerting_evaluation_duration_seconds", Help: "How long an alert evaluation pass took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	reg.MustRegister(m.alerts, m.evaluations, m.duration)
	return m
}

func (m *Metrics) evaluated(err error, took time.Duration) {
	if m == nil {
		return
	}
	m.duration.Observe(took.Seconds())
	if err != nil {
		m.evaluations.WithLabelValues("error").Inc()
		return
	}
	m.evaluations.WithLabelValues("ok").Inc()
}

func (m *Metrics) alertsNow(next map[string]*stored, now time.Time) {
	if m == nil {
		return
	}
	m.alerts.Reset()
	for _, a := range next {
		if a.State == Resolved && now.Sub(a.ResolvedAt) > recentlyResolved {
			continue
		}
		m.alerts.WithLabelValues(string(a.State), a.Detector).Inc()
	}
}
