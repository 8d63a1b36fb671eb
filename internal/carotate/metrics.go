package carotate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

var (
	descExpiry = prometheus.NewDesc("den_cluster_ca_expiry_timestamp_seconds",
		"When the CA that signs the cluster's certificates expires (Unix time); the leader rotates it when a third of its life is left.", nil, nil)
	descPhase = prometheus.NewDesc("den_cluster_ca_rotation_phase",
		"Where a rotation of the cluster CA stands: 0 stable, 1 trust (a new CA trusted beside the signer), 2 sign (the new CA signs).", nil, nil)
	descGeneration = prometheus.NewDesc("den_cluster_ca_rotation_steps_total",
		"Rotation steps of the cluster CA ever taken (three per rotation).", nil, nil)
)

// Collector reports the cluster CA of st's state at each scrape.
func Collector(st *store.Store) prometheus.Collector { return collector{st} }

type collector struct{ st *store.Store }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExpiry
	ch <- descPhase
	ch <- descGeneration
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	rec, err := c.st.Snapshot().ClusterCA()
	if err != nil {
		return // none yet: nothing to say
	}
	if cert, err := pki.ParseCert([]byte(rec.CertPEM)); err == nil {
		ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()))
	}
	phase := map[string]float64{store.CAStable: 0, store.CATrust: 1, store.CASign: 2}[rec.Phase]
	ch <- prometheus.MustNewConstMetric(descPhase, prometheus.GaugeValue, phase)
	ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.CounterValue, float64(rec.Generation))
}
