package daemon

import (
	"os"
	"runtime/debug"

	"github.com/denhq/den/internal/hostmem"
)

// controlPlaneGCPercent is the garbage collector's target of `den server`
// and `den agent` (Go's default is 100). A server's live heap is mostly
// the replicated state, which stays, while each request's garbage goes:
// collecting at three times the live heap rather than twice cut the CPU of
// a 3-server cluster under load by about an eighth (docs/benchmarks.md),
// for half again the peak memory.
const controlPlaneGCPercent = 200

// tuneGC applies the control plane's garbage collection defaults unless
// the operator set GOGC or GOMEMLIMIT: the target above, and a soft limit
// of half the host's memory, near which the collector works harder rather
// than let the heap grow.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(controlPlaneGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if mem, err := hostmem.Read(); err == nil && mem.TotalMB > 0 {
			debug.SetMemoryLimit(mem.TotalMB << 20 / 2)
		}
	}
}
