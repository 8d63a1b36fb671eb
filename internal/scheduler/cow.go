package scheduler

import (
	"math/bits"
	"slices"
	"sync/atomic"
)

// owners hands out the owner tokens of writable states. A structure node
// whose owner is the writer's token was copied by that writer and may be
// changed in place; any other is shared with a snapshot and is copied
// first. Every clone takes a new token, so a committed state is never
// written again.
var owners atomic.Uint64

// placementMap is a persistent hash array mapped trie of placements keyed
// by the hash of the sandbox ID: a lookup is a few pointer loads without
// comparisons, and a write copies only the small nodes on one path.
type placementMap struct {
	root *pmNode
	n    int
}

type pmNode struct {
	owner   uint64
	bitmap  uint32
	entries []pmEntry // one per set bit, in bit order; at depth 13, a collision list
}

// pmEntry is either a child node or a leaf.
type pmEntry struct {
	child *pmNode
	rec   *placementRec
}

const pmBits = 5

func (m *placementMap) get(h uint64, id string) (*placementRec, bool) {
	n := m.root
	for shift := uint(0); n != nil; shift += pmBits {
		if shift >= 64 {
			for _, e := range n.entries {
				if e.rec.sandboxID == id {
					return e.rec, true
				}
			}
			return nil, false
		}
		bit := uint32(1) << ((h >> shift) & 31)
		if n.bitmap&bit == 0 {
			return nil, false
		}
		e := n.entries[bits.OnesCount32(n.bitmap&(bit-1))]
		if e.child == nil {
			return e.rec, e.rec.hash == h && e.rec.sandboxID == id
		}
		n = e.child
	}
	return nil, false
}

func pmMutable(owner uint64, n *pmNode) *pmNode {
	if n.owner == owner {
		return n
	}
	return &pmNode{owner: owner, bitmap: n.bitmap, entries: slices.Clone(n.entries)}
}

// insert adds rec; false when its sandbox ID is already there.
func (m *placementMap) insert(owner uint64, rec *placementRec) bool {
	root := m.root
	if root == nil {
		root = &pmNode{owner: owner}
	}
	root, ok := pmInsert(owner, root, 0, rec)
	if ok {
		m.root = root
		m.n++
	}
	return ok
}

func pmInsert(owner uint64, n *pmNode, shift uint, rec *placementRec) (*pmNode, bool) {
	if shift >= 64 {
		for _, e := range n.entries {
			if e.rec.sandboxID == rec.sandboxID {
				return n, false
			}
		}
		n = pmMutable(owner, n)
		n.entries = append(n.entries, pmEntry{rec: rec})
		return n, true
	}
	bit := uint32(1) << ((rec.hash >> shift) & 31)
	i := bits.OnesCount32(n.bitmap & (bit - 1))
	if n.bitmap&bit == 0 {
		n = pmMutable(owner, n)
		n.bitmap |= bit
		n.entries = slices.Insert(n.entries, i, pmEntry{rec: rec})
		return n, true
	}
	e := n.entries[i]
	child := e.child
	if child == nil {
		if e.rec.hash == rec.hash && e.rec.sandboxID == rec.sandboxID {
			return n, false
		}
		child, _ = pmInsert(owner, &pmNode{owner: owner}, shift+pmBits, e.rec)
	}
	nc, ok := pmInsert(owner, child, shift+pmBits, rec)
	if !ok {
		return n, false
	}
	if nc != e.child {
		n = pmMutable(owner, n)
		n.entries[i] = pmEntry{child: nc}
	}
	return n, true
}

// remove deletes and returns the placement of a sandbox.
func (m *placementMap) remove(owner uint64, h uint64, id string) (*placementRec, bool) {
	if m.root == nil {
		return nil, false
	}
	root, rec := pmRemove(owner, m.root, 0, h, id)
	if rec == nil {
		return nil, false
	}
	m.root = root
	m.n--
	return rec, true
}

func pmRemove(owner uint64, n *pmNode, shift uint, h uint64, id string) (*pmNode, *placementRec) {
	if shift >= 64 {
		for i, e := range n.entries {
			if e.rec.sandboxID == id {
				n = pmMutable(owner, n)
				n.entries = slices.Delete(n.entries, i, i+1)
				return n, e.rec
			}
		}
		return n, nil
	}
	bit := uint32(1) << ((h >> shift) & 31)
	if n.bitmap&bit == 0 {
		return n, nil
	}
	i := bits.OnesCount32(n.bitmap & (bit - 1))
	e := n.entries[i]
	if e.child == nil {
		if e.rec.hash != h || e.rec.sandboxID != id {
			return n, nil
		}
		n = pmMutable(owner, n)
		n.bitmap &^= bit
		n.entries = slices.Delete(n.entries, i, i+1)
		return n, e.rec
	}
	nc, rec := pmRemove(owner, e.child, shift+pmBits, h, id)
	if rec == nil {
		return n, nil
	}
	n = pmMutable(owner, n)
	switch {
	case len(nc.entries) == 0:
		n.bitmap &^= bit
		n.entries = slices.Delete(n.entries, i, i+1)
	case len(nc.entries) == 1 && nc.entries[0].child == nil:
		n.entries[i] = pmEntry{rec: nc.entries[0].rec} // a lone leaf moves up
	default:
		n.entries[i] = pmEntry{child: nc}
	}
	return n, rec
}

// each calls fn for every placement, in an order fixed by the hashes,
// until it returns false.
func (m *placementMap) each(fn func(*placementRec) bool) {
	if m.root != nil {
		pmEach(m.root, fn)
	}
}

func pmEach(n *pmNode, fn func(*placementRec) bool) bool {
	for _, e := range n.entries {
		if e.child != nil {
			if !pmEach(e.child, fn) {
				return false
			}
		} else if !fn(e.rec) {
			return false
		}
	}
	return true
}

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

// idHash is FNV-1a: fixed, so the order of placements is the same in every
// process (followers, replays).
func idHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
