package alertmanager

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the forwarder's Prometheus metrics, labelled by Alertmanager URL. A nil *Metrics
// records nothing.
type Metrics struct {
	posts       *prometheus.CounterVec
	posted      *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

// NewMetrics registers the forwarder's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_alertmanager_posts_total",
			Help: "Posts of alerts to an Alertmanager, by URL and result: ok, error (no answer: connection, timeout) or rejected (an answer other than 2xx); failed posts are retried.",
		}, []string{"url", "result"}),
		posted: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_alertmanager_alerts_posted",
			Help: "Alerts (firing and recently resolved) in the last successful post to an Alertmanager, by URL.",
		}, []string{"url"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_alertmanager_last_success_timestamp_seconds",
			Help: "When a post to an Alertmanager last succeeded, in Unix seconds, by URL.",
		}, []string{"url"}),
	}
	reg.MustRegister(m.posts, m.posted, m.lastSuccess)
	return m
}

func (m *Metrics) post(url, result string) {
	if m != nil {
		m.posts.WithLabelValues(url, result).Inc()
	}
}

func (m *Metrics) succeeded(url string, alerts int, unix float64) {
	if m != nil {
		m.posted.WithLabelValues(url).Set(float64(alerts))
		m.lastSuccess.WithLabelValues(url).Set(unix)
	}
}
