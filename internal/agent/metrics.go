package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are an agent process's Prometheus metrics, shared by its agents
// (one, or N with --sim N), labelled by node ID where a per-node value
// means something. Register them on a registry of the caller's.
type Metrics struct {
	linkUp       *prometheus.GaugeVec
	connects     *prometheus.CounterVec
	linkLosses   *prometheus.CounterVec
	sandboxes    *prometheus.GaugeVec
	certExpiry   *prometheus.GaugeVec
	heartbeatRTT prometheus.Histogram
}

// NewMetrics makes an agent process's metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		linkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "den_agent_link_up", Help: "1 while the node's link to a server is up (its hello accepted), else 0.",
		}, []string{"node"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "den_agent_link_connects_total", Help: "Links to a server that came up (hello accepted).",
		}, []string{"node"}),
		linkLosses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "den_agent_link_failures_total", Help: "Connection attempts that failed and links that were lost.",
		}, []string{"node"}),
		sandboxes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "den_agent_sandboxes", Help: "Sandboxes the node runs, as of its last hello or heartbeat.",
		}, []string{"node"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "den_agent_certificate_expiry_timestamp_seconds", Help: "When the node's client certificate expires (Unix time); it is renewed with a third of its life left.",
		}, []string{"node"}),
		heartbeatRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "den_agent_heartbeat_seconds", Help: "Round trip of a heartbeat call to the server.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.linkUp, m.connects, m.linkLosses, m.sandboxes, m.certExpiry, m.heartbeatRTT}
}

// The agent's hooks; each is a no-op on nil Metrics.

func (m *Metrics) up(node string, sandboxes int, certExpiry time.Time) {
	if m == nil {
		return
	}
	m.linkUp.WithLabelValues(node).Set(1)
	m.connects.WithLabelValues(node).Inc()
	m.sandboxes.WithLabelValues(node).Set(float64(sandboxes))
	m.certExpiry.WithLabelValues(node).Set(float64(certExpiry.Unix()))
}

func (m *Metrics) down(node string) {
	if m == nil {
		return
	}
	m.linkUp.WithLabelValues(node).Set(0)
	m.linkLosses.WithLabelValues(node).Inc()
}

func (m *Metrics) heartbeat(node string, sandboxes int, rtt time.Duration) {
	if m == nil {
		return
	}
	m.sandboxes.WithLabelValues(node).Set(float64(sandboxes))
	m.heartbeatRTT.Observe(rtt.Seconds())
}

func (m *Metrics) renewed(node string, certExpiry time.Time) {
	if m == nil {
		return
	}
	m.certExpiry.WithLabelValues(node).Set(float64(certExpiry.Unix()))
}
