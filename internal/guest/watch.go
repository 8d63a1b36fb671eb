package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"

	pb "github.com/denhq/den/api/envd/filesystem"
	"github.com/denhq/den/internal/errdefs"
)

// maxPolledEvents bounds the events a polling watcher keeps between two
// GetWatcherEvents calls; older ones are dropped first.
const maxPolledEvents = 10000

// watchers tracks the agent's live directory watches so Close can stop them.
type watchers struct {
	mu     sync.Mutex
	all    map[*dirWatch]struct{}
	polls  map[string]*pollWatch
	closed bool
}

func newWatchers() *watchers {
	return &watchers{all: map[*dirWatch]struct{}{}, polls: map[string]*pollWatch{}}
}

// closeAll stops every watch; later watches fail to register.
func (ws *watchers) closeAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.closed = true
	for d := range ws.all {
		d.w.Close()
	}
}

func (ws *watchers) add(d *dirWatch) error {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return errdefs.New(errdefs.Unavailable, "agent is closing")
	}
	ws.all[d] = struct{}{}
	return nil
}

func (ws *watchers) remove(d *dirWatch) {
	ws.mu.Lock()
	delete(ws.all, d)
	ws.mu.Unlock()
	d.w.Close()
}

// dirWatch is one fsnotify watch of a directory, optionally recursive.
type dirWatch struct {
	a            *Agent
	root         string
	recursive    bool
	includeEntry bool
	w            *fsnotify.Watcher
}

// watchDir starts watching root for acct. The caller removes the watch
// from a.watch when done.
func (a *Agent) watchDir(acct *account, path string, recursive, includeEntry bool) (*dirWatch, error) {
	root, err := acct.resolvePath(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, classifyFS(err, "watch %s", root)
	}
	if !fi.IsDir() {
		return nil, errdefs.New(errdefs.InvalidArgument, "%s is not a directory", root)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, classifyFS(err, "watch %s", root)
	}
	d := &dirWatch{a: a, root: root, recursive: recursive, includeEntry: includeEntry, w: w}
	if err := a.watch.add(d); err != nil {
		w.Close()
		return nil, err
	}
	if err := d.addTree(root); err != nil {
		a.watch.remove(d)
		return nil, err
	}
	return d, nil
}

// addTree watches dir and, for a recursive watch, every directory below.
func (d *dirWatch) addTree(dir string) error {
	if !d.recursive {
		return classifyFS(d.w.Add(dir), "watch %s", dir)
	}
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return classifyFS(err, "watch %s", dir)
			}
			return nil // vanished or unreadable below the root: skip it
		}
		if !e.IsDir() {
			return nil
		}
		if err := d.w.Add(p); err != nil && p == dir {
			return classifyFS(err, "watch %s", dir)
		}
		return nil
	})
}

// run converts fsnotify events to envd events and passes them to emit until
// ctx ends, the watch is closed, or emit returns false. Each tick calls
// emit(nil), for keepalives; tick may be nil.
func (d *dirWatch) run(ctx context.Context, tick <-chan time.Time, emit func(*pb.FilesystemEvent) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			if !emit(nil) {
				return
			}
		case err, ok := <-d.w.Errors:
			if !ok {
				return
			}
			d.a.log.Warn("watch error", "root", d.root, "err", err)
		case ev, ok := <-d.w.Events:
			if !ok {
				return
			}
			for _, out := range d.convert(ev) {
				if !emit(out) {
					return
				}
			}
		}
	}
}

var opTypes = []struct {
	op fsnotify.Op
	t  pb.EventType
}{
	{fsnotify.Create, pb.EventType_EVENT_TYPE_CREATE},
	{fsnotify.Write, pb.EventType_EVENT_TYPE_WRITE},
	{fsnotify.Remove, pb.EventType_EVENT_TYPE_REMOVE},
	{fsnotify.Rename, pb.EventType_EVENT_TYPE_RENAME},
	{fsnotify.Chmod, pb.EventType_EVENT_TYPE_CHMOD},
}

// convert turns one fsnotify event into envd events, one per operation,
// named relative to the watched root. New directories join a recursive watch.
func (d *dirWatch) convert(ev fsnotify.Event) []*pb.FilesystemEvent {
	name, err := filepath.Rel(d.root, ev.Name)
	if err != nil {
		name = ev.Name
	}
	var entry *pb.EntryInfo
	if d.includeEntry || (d.recursive && ev.Has(fsnotify.Create)) {
		entry, _ = d.a.entry(ev.Name)
	}
	if d.recursive && ev.Has(fsnotify.Create) && entry.GetType() == pb.FileType_FILE_TYPE_DIRECTORY {
		_ = d.addTree(ev.Name)
	}
	if !d.includeEntry {
		entry = nil
	}
	var out []*pb.FilesystemEvent
	for _, ot := range opTypes {
		if ev.Has(ot.op) {
			out = append(out, &pb.FilesystemEvent{Name: name, Type: ot.t, Entry: entry})
		}
	}
	return out
}

// WatchDir streams the events of a directory: a start event once the watch
// is in place, then filesystem events and keepalives.
func (s *fsService) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return toConnect(err)
	}
	m := req.Msg
	d, err := s.a.watchDir(acct, m.GetPath(), m.GetRecursive(), m.GetIncludeEntry())
	if err != nil {
		return toConnect(err)
	}
	defer s.a.watch.remove(d)
	start := &pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}}
	if err := stream.Send(start); err != nil {
		return err
	}
	tick := time.NewTicker(keepaliveInterval(req.Header()))
	defer tick.Stop()
	var sendErr error
	d.run(ctx, tick.C, func(ev *pb.FilesystemEvent) bool {
		sendErr = stream.Send(watchResponse(ev))
		return sendErr == nil
	})
	if sendErr == nil && ctx.Err() != nil {
		sendErr = ctx.Err()
	}
	return toConnect(sendErr)
}

// watchResponse wraps ev, or a keepalive when ev is nil.
func watchResponse(ev *pb.FilesystemEvent) *pb.WatchDirResponse {
	if ev == nil {
		return &pb.WatchDirResponse{Event: &pb.WatchDirResponse_Keepalive{Keepalive: &pb.WatchDirResponse_KeepAlive{}}}
	}
	return &pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: ev}}
}

// pollWatch is a watch whose events wait for GetWatcherEvents.
type pollWatch struct {
	d      *dirWatch
	cancel context.CancelFunc
	mu     sync.Mutex
	events []*pb.FilesystemEvent
}

// CreateWatcher starts a watch polled with GetWatcherEvents.
func (s *fsService) CreateWatcher(_ context.Context, req *connect.Request[pb.CreateWatcherRequest]) (*connect.Response[pb.CreateWatcherResponse], error) {
	acct, err := s.a.account(req.Header(), "")
	if err != nil {
		return nil, toConnect(err)
	}
	m := req.Msg
	d, err := s.a.watchDir(acct, m.GetPath(), m.GetRecursive(), m.GetIncludeEntry())
	if err != nil {
		return nil, toConnect(err)
	}
	ctx, cancel := context.WithCancel(s.a.ctx)
	pw := &pollWatch{d: d, cancel: cancel}
	id := newWatcherID()
	s.a.watch.mu.Lock()
	s.a.watch.polls[id] = pw
	s.a.watch.mu.Unlock()
	if !s.a.goOwned(func() { d.run(ctx, nil, pw.append) }) {
		cancel()
		s.a.watch.poll(id, true)
		s.a.watch.remove(d)
		return nil, toConnect(errdefs.New(errdefs.Unavailable, "agent is closing"))
	}
	return connect.NewResponse(&pb.CreateWatcherResponse{WatcherId: id}), nil
}

func (pw *pollWatch) append(ev *pb.FilesystemEvent) bool {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.events) >= maxPolledEvents {
		pw.events = pw.events[1:]
	}
	pw.events = append(pw.events, ev)
	return true
}

// GetWatcherEvents returns and forgets the events seen since the last call.
func (s *fsService) GetWatcherEvents(_ context.Context, req *connect.Request[pb.GetWatcherEventsRequest]) (*connect.Response[pb.GetWatcherEventsResponse], error) {
	pw, err := s.a.watch.poll(req.Msg.GetWatcherId(), false)
	if err != nil {
		return nil, toConnect(err)
	}
	pw.mu.Lock()
	events := pw.events
	pw.events = nil
	pw.mu.Unlock()
	return connect.NewResponse(&pb.GetWatcherEventsResponse{Events: events}), nil
}

// RemoveWatcher stops a polled watch.
func (s *fsService) RemoveWatcher(_ context.Context, req *connect.Request[pb.RemoveWatcherRequest]) (*connect.Response[pb.RemoveWatcherResponse], error) {
	pw, err := s.a.watch.poll(req.Msg.GetWatcherId(), true)
	if err != nil {
		return nil, toConnect(err)
	}
	pw.cancel()
	s.a.watch.remove(pw.d)
	return connect.NewResponse(&pb.RemoveWatcherResponse{}), nil
}

// poll returns the polled watch id, removing it from the table with del.
func (ws *watchers) poll(id string, del bool) (*pollWatch, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	pw, ok := ws.polls[id]
	if !ok {
		return nil, errdefs.Wrap(errdefs.NotFound, errors.New("watcher not found"), "watcher %q", id)
	}
	if del {
		delete(ws.polls, id)
	}
	return pw, nil
}

func newWatcherID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
