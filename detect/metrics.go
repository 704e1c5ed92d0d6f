package detect

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keywatch/keywatch/finding"
)

// Metrics are the detectors' Prometheus metrics.
type Metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	findings *prometheus.GaugeVec
	lastRun  *prometheus.GaugeVec
}

// NewMetrics registers the detectors' metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_detect_runs_total", Help: "Detector runs by result (ok, error).",
		}, []string{"detector", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keywatch_detect_run_duration_seconds", Help: "How long a detector run took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"detector"}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_detect_findings", Help: "Findings of each detector's last successful run, by severity.",
		}, []string{"detector", "severity"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keywatch_detect_last_success_timestamp_seconds", Help: "When each detector last ran without error.",
		}, []string{"detector"}),
	}
	reg.MustRegister(m.runs, m.duration, m.findings, m.lastRun)
	return m
}

func (m *Metrics) observe(run finding.Run) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(run.Detector).Observe(run.Finished.Sub(run.Started).Seconds())
	if run.Err != nil {
		m.runs.WithLabelValues(run.Detector, "error").Inc()
		return
	}
	m.runs.WithLabelValues(run.Detector, "ok").Inc()
	m.lastRun.WithLabelValues(run.Detector).Set(float64(run.Finished.Unix()))
	counts := map[finding.Severity]int{}
	for _, f := range run.Findings {
		counts[f.Severity]++
	}
	for _, s := range []finding.Severity{finding.Info, finding.Warning, finding.Critical} {
		m.findings.WithLabelValues(run.Detector, s.String()).Set(float64(counts[s]))
	}
}
