package den

import (
	"context"
	"fmt"
	"iter"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem"
)

// EventOp is what happened to a watched entry.
type EventOp string

// The operations a watch reports.
const (
	OpCreate EventOp = "create"
	OpWrite  EventOp = "write"
	OpRemove EventOp = "remove"
	OpRename EventOp = "rename"
	OpChmod  EventOp = "chmod"
)

var eventOps = map[filesystem.EventType]EventOp{
	filesystem.EventType_EVENT_TYPE_CREATE: OpCreate,
	filesystem.EventType_EVENT_TYPE_WRITE:  OpWrite,
	filesystem.EventType_EVENT_TYPE_REMOVE: OpRemove,
	filesystem.EventType_EVENT_TYPE_RENAME: OpRename,
	filesystem.EventType_EVENT_TYPE_CHMOD:  OpChmod,
}

// FSEvent is a change in a watched directory.
type FSEvent struct {
	// Name is the entry's path relative to the watched directory.
	Name string
	Op   EventOp
	// Entry describes the entry after the change, when the guest sent it.
	Entry *EntryInfo
}

// Watcher streams the changes of a directory. Close it when done.
type Watcher struct {
	stream *connect.ServerStreamForClient[filesystem.WatchDirResponse]
	cancel context.CancelFunc
	path   string
}

// Watch starts watching the directory at path (and its subdirectories when
// recursive). It returns once the guest has started watching, so changes
// made after Watch returns are reported.
func (s *Sandbox) Watch(ctx context.Context, path string, recursive bool) (*Watcher, error) {
	wctx, cancel := context.WithCancel(ctx)
	req := &filesystem.WatchDirRequest{Path: path, Recursive: recursive, IncludeEntry: true}
	stream, err := s.fs().WatchDir(wctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		return nil, rpcErr(ctx, "watch "+path, err)
	}
	w := &Watcher{stream: stream, cancel: cancel, path: path}
	for stream.Receive() {
		if stream.Msg().GetStart() != nil {
			return w, nil
		}
	}
	err = stream.Err()
	w.Close()
	if err == nil {
		return nil, fmt.Errorf("watch %s: stream ended before the watch started", path)
	}
	return nil, rpcErr(ctx, "watch "+path, err)
}

// Events yields the changes as they happen until the watch ends: Close
// was called, the context passed to Watch ended, or the stream failed (the
// error is yielded once; ending by Close or the context yields nothing).
// Events may be ranged over only once, by one goroutine.
func (w *Watcher) Events() iter.Seq2[FSEvent, error] {
	return func(yield func(FSEvent, error) bool) {
		defer w.stream.Close()
		for w.stream.Receive() {
			fe := w.stream.Msg().GetFilesystem()
			if fe == nil {
				continue // start or keepalive
			}
			ev := FSEvent{Name: fe.GetName(), Op: eventOps[fe.GetType()]}
			if fe.Entry != nil {
				e := entryFromProto(fe.GetEntry())
				ev.Entry = &e
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := w.stream.Err(); err != nil && !isCanceled(err) {
			yield(FSEvent{}, fmt.Errorf("watch %s: %w", w.path, fromConnect(err)))
		}
	}
}

// Close stops the watch. It is safe to call more than once and
// concurrently with Events, which then ends.
func (w *Watcher) Close() error {
	w.cancel()
	return nil
}

func isCanceled(err error) bool {
	return connect.CodeOf(err) == connect.CodeCanceled
}
