package notify

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the notifier's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	sent         *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	outboxDepth  prometheus.Gauge
	interactions *prometheus.CounterVec
}

// NewMetrics registers the notifier's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_notifications_sent_total", Help: "Slack calls that delivered a notification, by channel and kind (post, update, reply, adopt).",
		}, []string{"channel", "kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_notifications_failed_total", Help: "Notifications Slack refused for good (not retried until their content changes), by channel and Slack's reason.",
		}, []string{"channel", "reason"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_notifications_retried_total", Help: "Slack calls that failed transiently (429, 5xx, network) and will be retried, by channel.",
		}, []string{"channel"}),
		outboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keywatch_outbox_depth", Help: "Notifications waiting in the outbox for delivery.",
		}),
		interactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_slack_interactions_total", Help: "Requests to /slack/interactions by result: approved, error, link (a Grafana button), user_not_allowed, unknown_action, bad_request, unavailable (the replay check could not reach ClickHouse); refused before authentication: off, bad_signature, stale_timestamp, body_too_large, replay.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.sent, m.failed, m.retried, m.outboxDepth, m.interactions)
	return m
}

func (m *Metrics) sentInc(channel, kind string) {
	if m != nil {
		m.sent.WithLabelValues(channel, kind).Inc()
	}
}

func (m *Metrics) failedInc(channel, reason string) {
	if m != nil {
		m.failed.WithLabelValues(channel, reason).Inc()
	}
}

func (m *Metrics) retriedInc(channel string) {
	if m != nil {
		m.retried.WithLabelValues(channel).Inc()
	}
}

func (m *Metrics) depth(n int) {
	if m != nil {
		m.outboxDepth.Set(float64(n))
	}
}

func (m *Metrics) interaction(result string) {
	if m != nil {
		m.interactions.WithLabelValues(result).Inc()
	}
}
