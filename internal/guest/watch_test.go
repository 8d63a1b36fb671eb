package guest

import (
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/denhq/den/api/envd/filesystem"
)

// seen records which (name, type) events arrived.
type seen map[string]map[pb.EventType]bool

func (s seen) add(ev *pb.FilesystemEvent) {
	if s[ev.GetName()] == nil {
		s[ev.GetName()] = map[pb.EventType]bool{}
	}
	s[ev.GetName()][ev.GetType()] = true
}

func (s seen) has(name string, t pb.EventType) bool { return s[name][t] }

func TestWatchDir(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.codecs() {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			root := filepath.Join(e.home, "w-"+c.name)
			os.Mkdir(root, 0o755)
			req := &pb.WatchDirRequest{Path: root, Recursive: true, IncludeEntry: true}
			stream, err := e.fs(c).WatchDir(ctx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			if !stream.Receive() || stream.Msg().GetStart() == nil {
				t.Fatalf("first message %v (err %v), want start", stream.Msg(), stream.Err())
			}
			got := seen{}
			var entry *pb.EntryInfo
			next := func(name string, typ pb.EventType) {
				t.Helper()
				for !got.has(name, typ) {
					if !stream.Receive() {
						t.Fatalf("stream ended waiting for %s %v: %v", name, typ, stream.Err())
					}
					if ev := stream.Msg().GetFilesystem(); ev != nil {
						got.add(ev)
						if ev.GetName() == "f" && ev.GetType() == pb.EventType_EVENT_TYPE_CREATE {
							entry = ev.GetEntry()
						}
					}
				}
			}
			writeFile(t, root+"/f", "x")
			next("f", pb.EventType_EVENT_TYPE_CREATE)
			next("f", pb.EventType_EVENT_TYPE_WRITE)
			if entry.GetPath() != root+"/f" || entry.GetType() != pb.FileType_FILE_TYPE_FILE {
				t.Errorf("create entry = %v", entry)
			}
			os.Chmod(root+"/f", 0o600)
			next("f", pb.EventType_EVENT_TYPE_CHMOD)
			os.Rename(root+"/f", root+"/g")
			next("f", pb.EventType_EVENT_TYPE_RENAME)
			next("g", pb.EventType_EVENT_TYPE_CREATE)
			os.Remove(root + "/g")
			next("g", pb.EventType_EVENT_TYPE_REMOVE)
			os.Mkdir(root+"/sub", 0o755)
			next("sub", pb.EventType_EVENT_TYPE_CREATE)
			writeFile(t, root+"/sub/deep", "y")
			next("sub/deep", pb.EventType_EVENT_TYPE_CREATE)
		})
	}
}

func TestPolledWatcher(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	fs := e.fs(e.codecs()[0])
	created, err := fs.CreateWatcher(ctx, connect.NewRequest(&pb.CreateWatcherRequest{Path: e.home}))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.GetWatcherId()
	writeFile(t, e.home+"/polled", "x")
	got := seen{}
	waitFor(t, "polled create event", func() bool {
		resp, err := fs.GetWatcherEvents(ctx, connect.NewRequest(&pb.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Msg.GetEvents() {
			got.add(ev)
		}
		return got.has("polled", pb.EventType_EVENT_TYPE_CREATE)
	})
	if _, err := fs.RemoveWatcher(ctx, connect.NewRequest(&pb.RemoveWatcherRequest{WatcherId: id})); err != nil {
		t.Fatal(err)
	}
	_, err = fs.GetWatcherEvents(ctx, connect.NewRequest(&pb.GetWatcherEventsRequest{WatcherId: id}))
	if codeOf(err) != connect.CodeNotFound {
		t.Errorf("events of a removed watcher: %v, want not_found", err)
	}
	for _, tt := range []struct {
		name string
		path string
		want connect.Code
	}{
		{"missing dir", e.home + "/missing", connect.CodeNotFound},
		{"a file", e.home + "/polled", connect.CodeInvalidArgument},
	} {
		_, err := fs.CreateWatcher(ctx, connect.NewRequest(&pb.CreateWatcherRequest{Path: tt.path}))
		if codeOf(err) != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}
