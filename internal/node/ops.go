package node

import (
	"context"
	"fmt"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// opStep is one named step of a multi-step operation on a sandbox (suspend,
// resume) over the operation's state T. undo, when set, runs if a later
// step fails, with that step's error; undos run last-first.
type opStep[T any] struct {
	name string
	do   func(ctx context.Context, st *T) error
	undo func(ctx context.Context, st *T, cause error)
}

// runOp runs steps in order. When one fails, the undos of the steps done
// so far run (on a context that outlives ctx) and its error is returned.
// A panic is not an error: nothing is undone, as in a crash; Recover
// settles what is left.
func runOp[T any](ctx context.Context, n *Node, op string, st *T, steps []opStep[T]) error {
	for i, s := range steps {
		begin := time.Now()
		err := n.hook(op, s.name)
		if err == nil {
			err = s.do(ctx, st)
		}
		n.log.Debug("step", "op", op, "step", s.name, "took", time.Since(begin))
		if err == nil {
			continue
		}
		uctx := context.WithoutCancel(ctx)
		for j := i - 1; j >= 0; j-- {
			if u := steps[j].undo; u != nil {
				u(uctx, st, err)
			}
		}
		return err
	}
	return nil
}

// hook runs the test hook before step of op.
func (n *Node) hook(op, step string) error {
	if n.beforeStep == nil {
		return nil
	}
	if err := n.beforeStep(op, step); err != nil {
		return fmt.Errorf("%s: step %s: %w", op, step, err)
	}
	return nil
}

// transition moves sandbox id from state from to state to, applying
// change on the way, with compare-and-set; FailedPrecondition (with
// wrong's message) when the record is not in state from.
func (n *Node) transition(ctx context.Context, id, from, to string, wrong func(state string) error, change func(*store.Sandbox)) (*store.Sandbox, error) {
	var bad error
	sb, err := n.setStateIf(ctx, id, func(s *store.Sandbox) bool {
		if s.State != from {
			bad = wrong(s.State)
			return false
		}
		s.State = to
		if change != nil {
			change(s)
		}
		return true
	})
	if bad != nil {
		return nil, bad
	}
	return sb, err
}

// setStateIf is setState whose change may decline (return false): the
// record is then left as it is and returned.
func (n *Node) setStateIf(ctx context.Context, id string, change func(*store.Sandbox) bool) (*store.Sandbox, error) {
	for attempt := 0; ; attempt++ {
		cur, err := n.records.Snapshot().Sandbox(id)
		if err != nil {
			return nil, err
		}
		next := cur.Clone()
		if !change(next) {
			return cur, nil
		}
		err = n.records.UpdateSandbox(ctx, next)
		if err == nil || !errdefs.Is(err, errdefs.Conflict) || attempt >= 10 {
			return next, err
		}
	}
}
