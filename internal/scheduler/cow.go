package scheduler

import (
	"slices"
	"sync/atomic"
)

// owners hands out the owner tokens of writable states. A node table or
// chunk whose owner is the writer's token was copied by that writer and may
// be changed in place; any other is shared with a snapshot and is copied
// first. Every clone takes a new token, so a committed state is never
// written again.
var owners atomic.Uint64

// nodeTable is a copy-on-write array of node records indexed by sequence
// number, in chunks: a write copies one chunk (and, once per writer, the
// chunk directory), a lookup is two loads.
type nodeTable struct {
	owner  uint64 // the writer that owns chunks (the slice, not the chunks)
	chunks []*nodeChunk
}

const chunkBits = 7

type nodeChunk struct {
	owner uint64
	recs  [1 << chunkBits]*nodeRec
}

func (t *nodeTable) get(seq uint32) (*nodeRec, bool) {
	i := int(seq >> chunkBits)
	if i >= len(t.chunks) || t.chunks[i] == nil {
		return nil, false
	}
	r := t.chunks[i].recs[seq&(1<<chunkBits-1)]
	return r, r != nil
}

// set stores rec (nil: none) at seq.
func (t *nodeTable) set(owner uint64, seq uint32, rec *nodeRec) {
	if t.owner != owner {
		t.chunks = slices.Clone(t.chunks)
		t.owner = owner
	}
	i := int(seq >> chunkBits)
	for len(t.chunks) <= i {
		t.chunks = append(t.chunks, nil)
	}
	c := t.chunks[i]
	switch {
	case c == nil:
		c = &nodeChunk{owner: owner}
		t.chunks[i] = c
	case c.owner != owner:
		cp := *c
		cp.owner = owner
		c = &cp
		t.chunks[i] = c
	}
	c.recs[seq&(1<<chunkBits-1)] = rec
}

// each calls fn for every node in sequence order until it returns false.
func (t *nodeTable) each(fn func(*nodeRec) bool) {
	for _, c := range t.chunks {
		if c == nil {
			continue
		}
		for _, r := range c.recs {
			if r != nil && !fn(r) {
				return
			}
		}
	}
}
