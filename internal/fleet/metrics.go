package fleet

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/denhq/den/internal/scheduler"
)

// Metrics describe the fleet for Prometheus: placements, the nodes by
// status, and each pool's use, capacity and parked requests.
func (f *Fleet) Metrics() prometheus.Collector { return fleetCollector{f} }

var (
	descPlacements = prometheus.NewDesc("den_placements_total", "Sandboxes placed on a node by the scheduler.", nil, nil)
	descPlaceFails = prometheus.NewDesc("den_placement_failures_total", "Creates refused because no node had room.", nil, nil)
	descNodes      = prometheus.NewDesc("den_nodes", "Nodes known to this server, by status (up, draining, down).", []string{"status"}, nil)
	descPoolUsed   = prometheus.NewDesc("den_pool_used", "Resources placed in a pool (cpu_millis, memory_mb, disk_mb).", []string{"pool", "resource"}, nil)
	descPoolCap    = prometheus.NewDesc("den_pool_capacity", "Capacity of a pool's nodes (cpu_millis, memory_mb, disk_mb).", []string{"pool", "resource"}, nil)
	descParked     = prometheus.NewDesc("den_pool_parked_requests", "Requests of a pool waiting for capacity.", []string{"pool"}, nil)
)

type fleetCollector struct{ f *Fleet }

func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPlacements, descPlaceFails, descNodes, descPoolUsed, descPoolCap, descParked} {
		ch <- d
	}
}

func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descPlacements, prometheus.CounterValue, float64(c.f.placed.Load()))
	ch <- prometheus.MustNewConstMetric(descPlaceFails, prometheus.CounterValue, float64(c.f.refused.Load()))
	snap := c.f.sched.Snapshot()
	count := map[string]int{}
	for _, pool := range snap.Pools() {
		snap.EachNode(pool, func(n scheduler.NodeInfo) bool {
			count[n.Node.Status.String()]++
			return true
		})
		used, capacity := snap.Usage(pool)
		for _, r := range []struct {
			name    string
			u, have int64
		}{{"cpu_millis", used.CPUMillis, capacity.CPUMillis}, {"memory_mb", used.MemoryMB, capacity.MemoryMB}, {"disk_mb", used.DiskMB, capacity.DiskMB}} {
			ch <- prometheus.MustNewConstMetric(descPoolUsed, prometheus.GaugeValue, float64(r.u), pool, r.name)
			ch <- prometheus.MustNewConstMetric(descPoolCap, prometheus.GaugeValue, float64(r.have), pool, r.name)
		}
		ch <- prometheus.MustNewConstMetric(descParked, prometheus.GaugeValue, float64(c.f.sched.Parked(pool)), pool)
	}
	for _, st := range []scheduler.NodeStatus{scheduler.NodeUp, scheduler.NodeDraining, scheduler.NodeDown} {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(count[st.String()]), st.String())
	}
}
