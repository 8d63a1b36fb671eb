package e2b

import (
	"net/http"
	"strings"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// maxMetricsSandboxes bounds sandbox_ids of GET /sandboxes/metrics.
const maxMetricsSandboxes = 100

// metrics answers GET /sandboxes/{id}/metrics with the current reading
// of the runtime (den keeps no history yet, so start and end are ignored).
func (a *api) metrics(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	sb, err := a.peek(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	m, err := a.read(r, p, sb)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, []sandboxMetric{m})
	return nil
}

// metricsMany answers GET /sandboxes/metrics?sandbox_ids=a,b: the current
// reading of each running sandbox of the caller among them; others are
// left out, as E2B does.
func (a *api) metricsMany(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var ids []string
	for _, v := range r.URL.Query()["sandbox_ids"] {
		ids = append(ids, strings.Split(v, ",")...)
	}
	if len(ids) == 0 || len(ids) > maxMetricsSandboxes {
		return invalid("sandbox_ids must list 1 to %d sandbox IDs, comma-separated", maxMetricsSandboxes)
	}
	out := sandboxesWithMetrics{Sandboxes: map[string]sandboxMetric{}}
	for _, id := range ids {
		sb, err := a.peek(p, id)
		if err != nil || sb.State != "running" {
			continue
		}
		m, err := a.read(r, p, sb)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		out.Sandboxes[sb.ID] = m
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// read takes one reading of sb's resource usage.
func (a *api) read(r *http.Request, p server.Principal, sb *store.Sandbox) (sandboxMetric, error) {
	st, err := a.cfg.Service.Stats(r.Context(), p, sb.ID)
	if err != nil {
		return sandboxMetric{}, err
	}
	if st.At.IsZero() {
		st.At = a.cfg.Now()
	}
	return toMetric(sb, st), nil
}

// toMetric converts a reading. cpuUsedPct is the average since the
// sandbox started, over its CPU count.
func toMetric(sb *store.Sandbox, st driver.Stats) sandboxMetric {
	cpus := cpuCount(sb.CPUs)
	pct := 0.0
	if up := st.At.Sub(sb.StartedAt); up > 0 && cpus > 0 {
		pct = float64(st.CPUUsageNanos) / float64(up.Nanoseconds()) / float64(cpus) * 100
	}
	memTotal := st.MemoryLimit
	if memTotal == 0 {
		memTotal = uint64(sb.MemoryMB) << 20
	}
	diskTotal := st.DiskLimitBytes
	if diskTotal == 0 {
		diskTotal = uint64(sb.DiskMB) << 20
	}
	at := st.At.UTC().Truncate(time.Second)
	return sandboxMetric{
		Timestamp: at, TimestampUnix: at.Unix(), CPUCount: cpus, CPUUsedPct: min(pct, 100),
		MemUsed: st.MemoryBytes, MemTotal: memTotal, DiskUsed: st.DiskUsedBytes, DiskTotal: diskTotal,
	}
}
