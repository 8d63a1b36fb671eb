package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/nodeproto"
)

// SimCapacity is a simulated node's default capacity: a 16-core host
// with 64 GiB of memory and 1 TiB of disk.
var SimCapacity = nodeproto.Capacity{CPUs: 16, MemoryMB: 64 << 10, DiskMB: 1 << 20}

// RunSim runs n simulated nodes in this process until ctx ends: each is
// its own agent, with its own identity in base.DataDir/sim-NNN (key,
// certificate, node ID) and its own connection, named base.Name-NNN. A
// join token of at least n uses admits them on their first start. It
// returns when every agent has returned, with their errors joined.
func RunSim(ctx context.Context, n int, base Config) error {
	if n < 1 || n > 10000 {
		return errdefs.New(errdefs.InvalidArgument, "--sim %d: simulate 1 to 10000 nodes", n)
	}
	if base.Capacity == (nodeproto.Capacity{}) {
		base.Capacity = SimCapacity
	}
	if base.Logger == nil {
		base.Logger = slog.New(slog.DiscardHandler)
	}
	if len(base.Runtimes) == 0 {
		base.Runtimes = []string{"sim"}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := base
		cfg.Name = fmt.Sprintf("%s-%03d", base.Name, i)
		cfg.DataDir = filepath.Join(base.DataDir, fmt.Sprintf("sim-%03d", i))
		cfg.Logger = base.Logger.With("sim", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Run(ctx, cfg); err != nil {
				errs[i] = fmt.Errorf("simulated node %s: %w", cfg.Name, err)
			}
		}()
	}
	wg.Wait()
	return joinErrs(errs)
}

func joinErrs(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return fmt.Errorf("%d simulated nodes failed, the first: %w", len(out), out[0])
}
