package action

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the actions' Prometheus metrics.
type Metrics struct {
	revokes   *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	queued    prometheus.Gauge
}

// NewMetrics registers the actions' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		revokes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_revokes_total", Help: "Revoke decisions and outcomes by result (sent, failed, dry_run, refused, awaiting_approval, approved).",
		}, []string{"result"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_rollbacks_total", Help: "Rollback (extend_grace, reactivate) decisions and outcomes by result (sent, failed, refused, awaiting_approval, approved); attempts count in keywatch_revoke_attempts_total.",
		}, []string{"result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_revoke_attempts_total", Help: "Revoke webhook attempts by the receiver's HTTP status (or error).",
		}, []string{"status"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keywatch_actions_queued", Help: "Actions waiting to be delivered.",
		}),
	}
	reg.MustRegister(m.revokes, m.rollbacks, m.attempts, m.queued)
	return m
}

func (m *Metrics) result(r string) {
	if m != nil {
		m.revokes.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) attempt(status string) {
	if m != nil {
		m.attempts.WithLabelValues(status).Inc()
	}
}

func (m *Metrics) setQueued(n uint64) {
	if m != nil {
		m.queued.Set(float64(n))
	}
}

func (m *Metrics) rollbackResult(r string) {
	if m != nil {
		m.rollbacks.WithLabelValues(r).Inc()
	}
}

// result counts an outcome of an action of kind: revokes and rollbacks have their own counters.
func (r *Revoker) result(kind, result string) {
	if IsRollback(kind) {
		r.metrics.rollbackResult(result)
		return
	}
	r.metrics.result(result)
}
