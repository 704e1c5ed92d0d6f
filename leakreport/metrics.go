package leakreport

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts reported secrets and refused reports.
type Metrics struct {
	reports *prometheus.CounterVec
}

// NewMetrics registers the leak report metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reports: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keywatch_leak_reports_total",
		Help: "Reported secrets by result (matched: a known key, unknown: no key), and reports rejected for a bad signature or token (rejected).",
	}, []string{"result"})}
	reg.MustRegister(m.reports)
	for _, r := range []string{resultMatched, resultUnknown, resultRejected} {
		m.reports.WithLabelValues(r)
	}
	return m
}

const (
	resultMatched  = "matched"
	resultUnknown  = "unknown"
	resultRejected = "rejected"
)

func (m *Metrics) add(result string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.reports.WithLabelValues(result).Add(float64(n))
}
