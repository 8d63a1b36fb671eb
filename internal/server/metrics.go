package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, on a registry of its own so
// several servers can live in one test process.
type metrics struct {
	reg            *prometheus.Registry
	createSeconds  prometheus.Histogram
	createFailures prometheus.Counter
	reaped         prometheus.Counter
	idleKills      prometheus.Counter
	suspends       *prometheus.CounterVec // by cause
	resumes        *prometheus.CounterVec // by cause
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		createSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "den_sandbox_create_seconds",
			Help:    "Time from a create request to a running sandbox.",
			Buckets: prometheus.ExponentialBuckets(0.01, 1.6, 14),
		}),
		createFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "den_sandbox_create_failures_total", Help: "Sandbox creates that failed.",
		}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "den_sandbox_timeouts_total", Help: "Sandboxes removed because their timeout passed.",
		}),
		idleKills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "den_sandbox_idle_kills_total", Help: "Sandboxes removed because their idle timeout passed.",
		}),
		suspends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "den_sandbox_suspends_total", Help: "Sandboxes suspended, by cause (api, timeout, idle).",
		}, []string{"cause"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "den_sandbox_resumes_total", Help: "Sandboxes resumed, by cause (api, auto: woken by a request).",
		}, []string{"cause"}),
	}
	m.reg.MustRegister(m.createSeconds, m.createFailures, m.reaped, m.idleKills, m.suspends, m.resumes,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// RegisterMetrics adds collectors of the process's other parts (the
// fleet, the store) to GET /metrics.
func (s *Server) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.metrics.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
