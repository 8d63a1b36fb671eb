package scheduler

import (
	"slices"
	"sort"
)

// slotIndex is one class's ordered index of up nodes by slot key: a
// copy-on-write B+tree of two levels, a directory of sorted chunks. A
// decision is a binary search of the directory's chunk maxima (one
// contiguous array), a binary search inside one chunk and a short move of
// at most a chunk's keys, with no callback and no pointer in a key. Writes
// carry the writer's owner token (see owners): a chunk, or the directory,
// that another token made is copied before its first change, so a
// committed index is never written again.
type slotIndex struct {
	owner  uint64       // the token that owns the directory (chunks and lasts)
	chunks []*slotChunk // non-empty, in key order
	lasts  []slotKey    // lasts[i] is chunks[i]'s largest key
	n      int
}

type slotChunk struct {
	owner uint64
	keys  []slotKey // sorted, 1..maxChunkKeys
}

// maxChunkKeys bounds a chunk: 2 KiB of keys, so the copy a commit makes
// of a chunk, and a move inside one, stay short; 10k nodes are a directory
// of about a hundred chunks.
const maxChunkKeys = 128

// Len is the number of keys.
func (x *slotIndex) Len() int { return x.n }

// chunkFor is the first chunk whose largest key is at least k, or
// len(x.chunks) when k is above every key.
func (x *slotIndex) chunkFor(k slotKey) int {
	return sort.Search(len(x.lasts), func(i int) bool { return !slotLess(x.lasts[i], k) })
}

// searchKeys is the position of the first key of keys at least k.
func searchKeys(keys []slotKey, k slotKey) int {
	lo, hi := 0, len(keys)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if slotLess(keys[m], k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Ceil returns the smallest key at least k.
func (x *slotIndex) Ceil(k slotKey) (slotKey, bool) {
	i := x.chunkFor(k)
	if i == len(x.chunks) {
		return slotKey{}, false
	}
	keys := x.chunks[i].keys
	return keys[searchKeys(keys, k)], true
}

// Max returns the largest key.
func (x *slotIndex) Max() (slotKey, bool) {
	if x.n == 0 {
		return slotKey{}, false
	}
	return x.lasts[len(x.lasts)-1], true
}

// Get reports whether k is in the index.
func (x *slotIndex) Get(k slotKey) (slotKey, bool) {
	c, ok := x.Ceil(k)
	return c, ok && c == k
}

// DescendLessOrEqual calls fn for the keys at most k, largest first, until
// it returns false.
func (x *slotIndex) DescendLessOrEqual(k slotKey, fn func(slotKey) bool) {
	if x.n == 0 {
		return
	}
	// The first chunk whose largest key is above k holds the last keys at
	// most k, if any are left of it.
	i := sort.Search(len(x.lasts), func(i int) bool { return slotLess(k, x.lasts[i]) })
	j := 0
	if i < len(x.chunks) {
		keys := x.chunks[i].keys
		j = sort.Search(len(keys), func(m int) bool { return slotLess(k, keys[m]) })
	} else if i > 0 {
		i--
		j = len(x.chunks[i].keys)
	}
	for ; i >= 0; i-- {
		keys := x.chunks[i].keys
		if j < 0 {
			j = len(keys)
		}
		for m := j - 1; m >= 0; m-- {
			if !fn(keys[m]) {
				return
			}
		}
		j = -1
	}
}

// each calls fn for every key in order (checks and tests).
func (x *slotIndex) each(fn func(slotKey)) {
	for _, c := range x.chunks {
		for _, k := range c.keys {
			fn(k)
		}
	}
}

// own makes the directory writable by owner.
func (x *slotIndex) own(owner uint64) {
	if x.owner != owner {
		x.chunks, x.lasts, x.owner = slices.Clone(x.chunks), slices.Clone(x.lasts), owner
	}
}

// chunk returns chunk i writable by owner. Preconditions: own(owner).
func (x *slotIndex) chunk(owner uint64, i int) *slotChunk {
	c := x.chunks[i]
	if c.owner != owner {
		// Room for a few inserts: a batch rarely moves many keys into one
		// chunk, and a full-size copy of every chunk a batch touches would
		// double what a commit allocates.
		keys := make([]slotKey, len(c.keys), min(maxChunkKeys, len(c.keys)+8))
		copy(keys, c.keys)
		c = &slotChunk{owner: owner, keys: keys}
		x.chunks[i] = c
	}
	return c
}

// Insert adds k; a key already there is left as is.
func (x *slotIndex) Insert(owner uint64, k slotKey) {
	x.own(owner)
	if len(x.chunks) == 0 {
		keys := make([]slotKey, 1, maxChunkKeys)
		keys[0] = k
		x.chunks, x.lasts = append(x.chunks, &slotChunk{owner: owner, keys: keys}), append(x.lasts, k)
		x.n = 1
		return
	}
	i := min(x.chunkFor(k), len(x.chunks)-1) // above every key: the last chunk
	c := x.chunk(owner, i)
	j := searchKeys(c.keys, k)
	if j < len(c.keys) && c.keys[j] == k {
		return
	}
	if len(c.keys) == maxChunkKeys {
		x.split(owner, i)
		if j > maxChunkKeys/2 {
			i, j = i+1, j-maxChunkKeys/2
		}
		c = x.chunks[i]
	}
	c.keys = slices.Insert(c.keys, j, k)
	x.lasts[i] = c.keys[len(c.keys)-1]
	x.n++
}

// split moves the upper half of full chunk i into a new chunk after it.
// Preconditions: own(owner); chunk i is owner's.
func (x *slotIndex) split(owner uint64, i int) {
	c := x.chunks[i]
	half := len(c.keys) / 2
	keys := make([]slotKey, len(c.keys)-half, maxChunkKeys)
	copy(keys, c.keys[half:])
	c.keys = c.keys[:half]
	x.chunks = slices.Insert(x.chunks, i+1, &slotChunk{owner: owner, keys: keys})
	x.lasts = slices.Insert(x.lasts, i+1, keys[len(keys)-1])
	x.lasts[i] = c.keys[half-1]
}

// Delete removes k and reports whether it was there.
func (x *slotIndex) Delete(owner uint64, k slotKey) bool {
	i := x.chunkFor(k)
	if i == len(x.chunks) {
		return false
	}
	j := searchKeys(x.chunks[i].keys, k)
	if x.chunks[i].keys[j] != k {
		return false
	}
	x.own(owner)
	c := x.chunk(owner, i)
	c.keys = slices.Delete(c.keys, j, j+1)
	x.n--
	switch {
	case len(c.keys) == 0:
		x.chunks, x.lasts = slices.Delete(x.chunks, i, i+1), slices.Delete(x.lasts, i, i+1)
	default:
		x.lasts[i] = c.keys[len(c.keys)-1]
		x.mergeSmall(owner, i)
	}
	return true
}

// mergeSmall joins chunk i, when it has fallen to a quarter, with its next
// neighbour if both fit in half a chunk's room, so that churn cannot leave
// a directory of tiny chunks. Preconditions: own(owner); chunk i is owner's.
func (x *slotIndex) mergeSmall(owner uint64, i int) {
	if len(x.chunks[i].keys) > maxChunkKeys/4 || i+1 >= len(x.chunks) ||
		len(x.chunks[i].keys)+len(x.chunks[i+1].keys) > maxChunkKeys/2 {
		return
	}
	c := x.chunks[i]
	c.keys = append(c.keys, x.chunks[i+1].keys...)
	x.chunks, x.lasts = slices.Delete(x.chunks, i+1, i+2), slices.Delete(x.lasts, i+1, i+2)
	x.lasts[i] = c.keys[len(c.keys)-1]
}
