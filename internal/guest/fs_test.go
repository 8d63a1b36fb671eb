package guest

import (
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/denhq/den/api/envd/filesystem"
)

// ignoreVolatile drops the fields of EntryInfo that depend on the host.
var ignoreVolatile = protocmp.IgnoreFields(&pb.EntryInfo{}, "modified_time", "owner", "group", "size")

func TestFilesystem(t *testing.T) {
	e := newEnv(t)
	for _, c := range e.codecs() {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(e.home, c.name)
			testFilesystem(t, e, c, root)
		})
	}
}

func testFilesystem(t *testing.T, e *env, c codec, root string) {
	ctx := testCtx(t)
	fs := e.fs(c)
	rel := filepath.Base(root)
	mk, err := fs.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{Path: rel + "/a/b"}))
	if err != nil {
		t.Fatal(err)
	}
	wantDir := &pb.EntryInfo{Name: "b", Type: pb.FileType_FILE_TYPE_DIRECTORY, Path: root + "/a/b", Mode: 0o755, Permissions: "drwxr-xr-x"}
	if diff := cmp.Diff(wantDir, mk.Msg.GetEntry(), protocmp.Transform(), ignoreVolatile); diff != "" {
		t.Errorf("MakeDir (-want +got):\n%s", diff)
	}
	if _, err := fs.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{Path: root + "/a"})); codeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("MakeDir of an existing dir: %v, want already_exists", err)
	}
	writeFile(t, root+"/a/f.txt", "hello")
	os.Chmod(root+"/a/f.txt", 0o640)
	if err := os.Symlink("f.txt", root+"/a/link"); err != nil {
		t.Fatal(err)
	}
	st, err := fs.Stat(ctx, connect.NewRequest(&pb.StatRequest{Path: "~/" + rel + "/a/f.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	wantFile := &pb.EntryInfo{Name: "f.txt", Type: pb.FileType_FILE_TYPE_FILE, Path: root + "/a/f.txt", Size: 5, Mode: 0o640, Permissions: "-rw-r-----"}
	if diff := cmp.Diff(wantFile, st.Msg.GetEntry(), protocmp.Transform(), protocmp.IgnoreFields(&pb.EntryInfo{}, "modified_time", "owner", "group")); diff != "" {
		t.Errorf("Stat (-want +got):\n%s", diff)
	}
	if st.Msg.GetEntry().GetOwner() == "" || st.Msg.GetEntry().GetModifiedTime() == nil {
		t.Errorf("Stat left owner or modified_time empty: %v", st.Msg.GetEntry())
	}
	target := "f.txt"
	wantLink := &pb.EntryInfo{Name: "link", Type: pb.FileType_FILE_TYPE_SYMLINK, Path: root + "/a/link", Mode: 0o777, Permissions: "Lrwxrwxrwx", SymlinkTarget: &target}

	list := func(path string, depth uint32) []*pb.EntryInfo {
		t.Helper()
		resp, err := fs.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{Path: path, Depth: depth}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.GetEntries()
	}
	wantA := &pb.EntryInfo{Name: "a", Type: pb.FileType_FILE_TYPE_DIRECTORY, Path: root + "/a", Mode: 0o755, Permissions: "drwxr-xr-x"}
	for _, tt := range []struct {
		name  string
		path  string
		depth uint32
		want  []*pb.EntryInfo
	}{
		{"depth default", root + "/a", 0, []*pb.EntryInfo{wantDir, wantFile, wantLink}},
		{"depth 1", root, 1, []*pb.EntryInfo{wantA}},
		{"depth 2", root, 2, []*pb.EntryInfo{wantA, wantDir, wantFile, wantLink}},
	} {
		if diff := cmp.Diff(tt.want, list(tt.path, tt.depth), protocmp.Transform(), ignoreVolatile); diff != "" {
			t.Errorf("ListDir %s (-want +got):\n%s", tt.name, diff)
		}
	}

	mv, err := fs.Move(ctx, connect.NewRequest(&pb.MoveRequest{Source: root + "/a/f.txt", Destination: root + "/new/g.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := mv.Msg.GetEntry().GetPath(); got != root+"/new/g.txt" {
		t.Errorf("Move entry path = %s", got)
	}
	if _, err := fs.Remove(ctx, connect.NewRequest(&pb.RemoveRequest{Path: root + "/a"})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root + "/a"); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v", err)
	}

	for _, tt := range []struct {
		name string
		err  error
		want connect.Code
	}{
		{"stat missing", errOf(fs.Stat(ctx, connect.NewRequest(&pb.StatRequest{Path: root + "/missing"}))), connect.CodeNotFound},
		{"list missing", errOf(fs.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{Path: root + "/missing"}))), connect.CodeNotFound},
		{"list a file", errOf(fs.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{Path: root + "/new/g.txt"}))), connect.CodeInvalidArgument},
		{"remove missing", errOf(fs.Remove(ctx, connect.NewRequest(&pb.RemoveRequest{Path: root + "/missing"}))), connect.CodeNotFound},
		{"move missing", errOf(fs.Move(ctx, connect.NewRequest(&pb.MoveRequest{Source: root + "/missing", Destination: root + "/x"}))), connect.CodeNotFound},
		{"empty path", errOf(fs.Stat(ctx, connect.NewRequest(&pb.StatRequest{}))), connect.CodeInvalidArgument},
		{"other user's home", errOf(fs.Stat(ctx, connect.NewRequest(&pb.StatRequest{Path: "~nobody/x"}))), connect.CodeInvalidArgument},
		{"unknown user", errOf(fs.Stat(ctx, asUser(connect.NewRequest(&pb.StatRequest{Path: "/"}), "ghost"))), connect.CodeInvalidArgument},
	} {
		if got := codeOf(tt.err); got != tt.want {
			t.Errorf("%s: code %v (%v), want %v", tt.name, got, tt.err, tt.want)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }
