package qemu

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// step is one named step of a create or a restore of T, returning how to
// undo it.
type step[T any] struct {
	name string
	do   func(x T, ctx context.Context) (undo func(context.Context) error, err error)
}

// runSteps runs steps on x in order. When one fails, or ctx ends, it
// undoes those done (newest first, on a context of its own) and returns
// the error as "<what> <id>: <step>", of kind Canceled when ctx ended
// (whatever a killed tool made of it).
func runSteps[T any](ctx context.Context, log *slog.Logger, what, id string, x T, steps []step[T]) error {
	begin := time.Now()
	var undo []func(context.Context) error
	for _, s := range steps {
		u, err := s.do(x, ctx)
		if u != nil {
			undo = append(undo, u)
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			for i := len(undo) - 1; i >= 0; i-- {
				if uerr := undo[i](rctx); uerr != nil {
					log.Warn("undo of a failed step", "op", what, "sandbox", id, "err", uerr)
				}
			}
			cancel()
			kind := errdefs.KindOf(err)
			if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				kind = errdefs.Canceled
			}
			return errdefs.Wrap(kind, err, "%s %s: %s", what, id, s.name)
		}
		log.Debug("step done", "op", what, "sandbox", id, "step", s.name, "took", time.Since(begin))
	}
	return nil
}
