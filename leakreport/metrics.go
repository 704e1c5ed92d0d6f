package leakreport

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts reported secrets, refused reports and fetches of GitHub's public keys.
type Metrics struct {
	reports, keyFetches *prometheus.CounterVec
}

// NewMetrics registers the leak report metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{reports: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keywatch_leak_reports_total",
		Help: "Reported secrets by result (matched: a known key, unknown: no key), and reports rejected for a bad signature or token (rejected).",
	}, []string{"result"}), keyFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keywatch_leak_report_key_fetches_total",
		Help: "Fetches of GitHub's secret scanning public keys (leak_reports.github_keys_url) by result: fetched or failed.",
	}, []string{"result"})}
	reg.MustRegister(m.reports, m.keyFetches)
	for _, r := range []string{resultMatched, resultUnknown, resultRejected} {
		m.reports.WithLabelValues(r)
	}
	for _, r := range []string{resultFetched, resultFailed} {
		m.keyFetches.WithLabelValues(r)
	}
	return m
}

const (
	resultMatched  = "matched"
	resultUnknown  = "unknown"
	resultRejected = "rejected"

	resultFetched = "fetched"
	resultFailed  = "failed"
)

func (m *Metrics) add(result string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.reports.WithLabelValues(result).Add(float64(n))
}

func (m *Metrics) keyFetch(result string) {
	if m != nil {
		m.keyFetches.WithLabelValues(result).Inc()
	}
}
