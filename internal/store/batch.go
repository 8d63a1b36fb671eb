package store

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Group commit. Every write the leader takes (its own and those followers
// forward) goes through one batcher, which puts the commands that queued
// while earlier entries were in flight into one raft entry (cmdBatch). A
// lone write goes out at once and alone, so batching adds no latency when
// the cluster is quiet; under load each entry carries up to batchMax
// commands, and the per-entry work of raft (log append, replication,
// futures, the FSM call, snapshots counted in entries) is paid once for
// all of them. Every command of a batch is applied in order, on its own,
// with its own result, exactly as if it had its own entry at that index.

const (
	// batchMax is the most commands in one entry.
	batchMax = 256
	// batchInFlight is how many entries the batcher keeps in raft at once:
	// enough to overlap commit latency, few enough that load builds
	// batches rather than a queue of small entries.
	batchInFlight = 2
)

// batcher feeds one raft (the leader's) with batched entries.
type batcher struct {
	r    *raft.Raft
	reqs chan *batchReq
	sem  chan struct{}
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

type batchReq struct {
	data    []byte
	timeout time.Duration
	done    chan batchResult
}

type batchResult struct {
	index uint64
	err   error
}

func newBatcher(r *raft.Raft) *batcher {
	b := &batcher{
		r:    r,
		reqs: make(chan *batchReq, batchMax),
		sem:  make(chan struct{}, batchInFlight),
		stop: make(chan struct{}),
	}
	b.wg.Add(1)
	go b.loop()
	return b
}

// apply commits one command and returns its index and the FSM's
// classified rejection; raft's own errors are mapped by mapRaftErr.
func (b *batcher) apply(data []byte, timeout time.Duration) (uint64, error) {
	req := &batchReq{data: data, timeout: timeout, done: make(chan batchResult, 1)}
	select {
	case b.reqs <- req:
	case <-b.stop:
		return 0, mapRaftErr(raft.ErrRaftShutdown)
	}
	res := <-req.done
	return res.index, res.err
}

// close stops taking commands; those queued fail with ErrRaftShutdown.
// Raft must be shut down first or soon after.
func (b *batcher) close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}

func (b *batcher) loop() {
	defer b.wg.Done()
	for {
		var first *batchReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			b.failQueued()
			return
		}
		select {
		case b.sem <- struct{}{}:
		case <-b.stop:
			first.done <- batchResult{err: mapRaftErr(raft.ErrRaftShutdown)}
			b.failQueued()
			return
		}
		// Everything that queued while we waited for a slot joins.
		batch := []*batchReq{first}
	gather:
		for len(batch) < batchMax {
			select {
			case req := <-b.reqs:
				batch = append(batch, req)
			default:
				break gather
			}
		}
		b.wg.Add(1)
		go b.commit(batch)
	}
}

func (b *batcher) failQueued() {
	for {
		select {
		case req := <-b.reqs:
			req.done <- batchResult{err: mapRaftErr(raft.ErrRaftShutdown)}
		default:
			return
		}
	}
}

// commit applies batch as one entry and hands each command its result.
func (b *batcher) commit(batch []*batchReq) {
	defer b.wg.Done()
	defer func() { <-b.sem }()
	data := batch[0].data
	if len(batch) > 1 {
		data = encodeBatch(batch)
	}
	f := b.r.Apply(data, batchTimeout(batch))
	if err := f.Error(); err != nil {
		for _, req := range batch {
			req.done <- batchResult{err: mapRaftErr(err)}
		}
		return
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		for _, req := range batch {
			req.done <- batchResult{err: fmt.Errorf("unexpected fsm response %T", f.Response())}
		}
		return
	}
	if len(batch) == 1 {
		batch[0].done <- batchResult{index: res.Index, err: res.Err}
		return
	}
	for i, req := range batch {
		err := res.Err // the whole entry was refused (it never is, but be safe)
		if err == nil && i < len(res.Batch) {
			err = res.Batch[i]
		} else if err == nil {
			err = fmt.Errorf("batch result %d of %d missing", i, len(batch))
		}
		req.done <- batchResult{index: res.Index, err: err}
	}
}

// batchTimeout is how long raft may take to enqueue batch: the longest
// of its commands' (0, none, when any has none), so that one caller about
// to give up does not fail the others.
func batchTimeout(batch []*batchReq) time.Duration {
	var longest time.Duration
	for _, req := range batch {
		if req.timeout == 0 {
			return 0
		}
		longest = max(longest, req.timeout)
	}
	return longest
}

// encodeBatch is the cmdBatch entry of batch: the header, then each
// command as a uvarint length and its bytes (a whole entry of its own,
// header included).
func encodeBatch(batch []*batchReq) []byte {
	n := 2
	for _, req := range batch {
		n += binary.MaxVarintLen64 + len(req.data)
	}
	out := make([]byte, 2, n)
	out[0], out[1] = cmdVersion, byte(cmdBatch)
	for _, req := range batch {
		out = binary.AppendUvarint(out, uint64(len(req.data)))
		out = append(out, req.data...)
	}
	return out
}

// decodeBatch splits a cmdBatch body into its commands.
func decodeBatch(body []byte) ([][]byte, error) {
	var cmds [][]byte
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, fmt.Errorf("decode batch: bad length at command %d", len(cmds))
		}
		cmds = append(cmds, body[k:k+int(n)])
		body = body[k+int(n):]
	}
	return cmds, nil
}
