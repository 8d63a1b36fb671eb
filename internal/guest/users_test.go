package guest

import (
	"encoding/base64"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	fspb "github.com/denhq/den/api/envd/filesystem"
	"github.com/denhq/den/internal/errdefs"
)

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	e := newEnv(t)
	tests := []struct {
		name, user, want string
	}{
		{name: "default user", user: "", want: "0 0 0,4242 tester"},
		{name: "nobody", user: "nobody", want: "65534 65534 65534 nobody /"},
	}
	script := `echo "$(id -u) $(id -g) $(id -G | tr ' ' ,) $USER" $(test "$USER" = nobody && pwd)`
	for _, c := range e.codecs() {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				req := startReq("sh", "-c", script)
				if tt.user != "" {
					asUser(req, tt.user)
				}
				stream, err := e.proc(c).Start(testCtx(t), req)
				if err != nil {
					t.Fatal(err)
				}
				got := collect(t, stream)
				if diff := cmp.Diff(tt.want+"\n", got.stdout); diff != "" {
					t.Errorf("identity (-want +got):\n%s\nstderr: %s", diff, got.stderr)
				}
			})
		}
	}
}

func TestFileOpsOwnedByUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	e := newEnv(t)
	c := e.codecs()[0]
	dir := e.home + "/nobody-dir/sub"
	resp, err := e.fs(c).MakeDir(testCtx(t), asUser(connect.NewRequest(&fspb.MakeDirRequest{Path: dir}), "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.GetEntry().GetOwner() + ":" + resp.Msg.GetEntry().GetGroup(); got != "nobody:nogroup" {
		t.Errorf("owner = %s, want nobody:nogroup", got)
	}
	up := uploadRaw(t, e, "/files?username=nobody&path="+dir+"/f.txt", "data", "")
	if up.StatusCode != 200 {
		t.Fatalf("upload status %d", up.StatusCode)
	}
	st, err := e.fs(c).Stat(testCtx(t), connect.NewRequest(&fspb.StatRequest{Path: dir + "/f.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Msg.GetEntry().GetOwner(); got != "nobody" {
		t.Errorf("uploaded file owner = %s, want nobody", got)
	}
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	users := newUserDB(dir+"/passwd", dir+"/group", nil)
	writeFile(t, users.passwd.path, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
	writeFile(t, users.group.path, "root:x:0:\nuser:x:1000:\nstaff:x:50:user\nwheel:x:10:\n")
	tests := []struct {
		spec string
		want account
	}{
		{"user", account{Name: "user", UID: 1000, GID: 1000, Groups: []uint32{1000, 50}, Home: "/home/user"}},
		{"1000", account{Name: "user", UID: 1000, GID: 1000, Groups: []uint32{1000, 50}, Home: "/home/user"}},
		{"0", account{Name: "root", UID: 0, GID: 0, Groups: []uint32{0}, Home: "/root"}},
		{"4242", account{Name: "4242", UID: 4242, GID: 0, Groups: []uint32{0}, Home: "/"}},
		{"user:wheel", account{Name: "user", UID: 1000, GID: 10, Groups: []uint32{10, 50}, Home: "/home/user"}},
		{"1000:7", account{Name: "user", UID: 1000, GID: 7, Groups: []uint32{7, 50}, Home: "/home/user"}},
		{"4242:4242", account{Name: "4242", UID: 4242, GID: 4242, Groups: []uint32{4242}, Home: "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := users.lookup(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("lookup(%q) (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
	for spec, want := range map[string]string{
		"nobody":     `user "nobody" not found`,
		"user:nogrp": `group "nogrp" not found`,
		"":           `user "": want user or user:group`,
		"user:":      `user "user:": want user or user:group`,
	} {
		_, err := users.lookup(spec)
		if errdefs.KindOf(err) != errdefs.InvalidArgument || err == nil || err.Error() != want {
			t.Errorf("lookup(%q) = %v, want InvalidArgument %q", spec, err, want)
		}
	}
}

// TestLookupWithoutPasswd checks an image without /etc/passwd (FROM
// scratch) still runs processes as root or as a uid.
func TestLookupWithoutPasswd(t *testing.T) {
	dir := t.TempDir()
	users := newUserDB(dir+"/passwd", dir+"/group", newFSGen())
	for spec, want := range map[string]account{
		"root":    {Name: "root", UID: 0, GID: 0, Groups: []uint32{0}, Home: "/"},
		"65532:7": {Name: "65532", UID: 65532, GID: 7, Groups: []uint32{7}, Home: "/"},
	} {
		got, err := users.lookup(spec)
		if err != nil {
			t.Fatalf("lookup(%q): %v", spec, err)
		}
		if diff := cmp.Diff(want, *got); diff != "" {
			t.Errorf("lookup(%q) (-want +got):\n%s", spec, diff)
		}
	}
	if _, err := users.lookup("user"); err == nil || !strings.Contains(err.Error(), "read users") {
		t.Errorf("lookup of a name without passwd = %v, want a read error", err)
	}
}

func TestBasicUser(t *testing.T) {
	for creds, want := range map[string]string{
		"user:":      "user",
		"user:pw":    "user",
		"user":       "user",
		"1000:1000:": "1000:1000",
	} {
		h := http.Header{}
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
		if got, err := basicUser(h); err != nil || got != want {
			t.Errorf("basicUser(%q) = %q, %v; want %q", creds, got, err, want)
		}
	}
}

func TestWorkDirDefault(t *testing.T) {
	home, wd := t.TempDir(), t.TempDir()
	acct := &account{Name: "u", Home: home}
	for _, tt := range []struct{ cwd, defaultDir, want string }{
		{"", wd, wd},
		{"", "", home},
		{"", wd + "/missing", home},
		{"/", wd, "/"},
	} {
		if got, _, err := uncached.workDir(acct, tt.cwd, tt.defaultDir); err != nil || got != tt.want {
			t.Errorf("workDir(%q, %q) = %q, %v; want %q", tt.cwd, tt.defaultDir, got, err, tt.want)
		}
	}
	if got, _, _ := uncached.workDir(&account{Home: wd + "/missing"}, "", ""); got != "/" {
		t.Errorf("workDir without default dir or home = %q, want /", got)
	}
}

// TestLookupSeesChangedFiles checks the parsed files are read again after
// each kind of change: an edit in place of the same size, a replacement by
// rename (as useradd does), and a removal.
func TestLookupSeesChangedFiles(t *testing.T) {
	t.Run("stat", func(t *testing.T) { testLookupSeesChangedFiles(t, nil) })
	t.Run("inotify", func(t *testing.T) { testLookupSeesChangedFiles(t, newFSGen()) })
}

func testLookupSeesChangedFiles(t *testing.T, gen *fsGen) {
	dir := t.TempDir()
	users := newUserDB(dir+"/passwd", dir+"/group", gen)
	writeFile(t, users.group.path, "user:x:1000:\n")
	uidOf := func(spec string) uint32 {
		t.Helper()
		acct, err := users.lookup(spec)
		if err != nil {
			t.Fatalf("lookup(%q): %v", spec, err)
		}
		return acct.UID
	}
	writeFile(t, users.passwd.path, "user:x:1000:1000::/home/user:/bin/sh\n")
	if got := uidOf("user"); got != 1000 {
		t.Fatalf("uid = %d, want 1000", got)
	}
	// In place, same size: only the times tell.
	f, err := os.OpenFile(users.passwd.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("1001"), int64(len("user:x:"))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := uidOf("user"); got != 1001 {
		t.Errorf("after an edit in place: uid = %d, want 1001", got)
	}
	next := dir + "/passwd+"
	writeFile(t, next, "user:x:1000:1000::/home/user:/bin/sh\nbob:x:1002:1000::/home/bob:/bin/sh\n")
	if err := os.Rename(next, users.passwd.path); err != nil {
		t.Fatal(err)
	}
	if got := uidOf("bob"); got != 1002 {
		t.Errorf("after a rename: uid of bob = %d, want 1002", got)
	}
	if got := users.userName(1002); got != "bob" {
		t.Errorf("userName(1002) = %q, want bob", got)
	}
	if err := os.Remove(users.passwd.path); err != nil {
		t.Fatal(err)
	}
	if _, err := users.lookup("bob"); err == nil || !strings.Contains(err.Error(), "read users") {
		t.Errorf("lookup after removal = %v, want a read error", err)
	}
	if got := users.userName(1002); got != "1002" {
		t.Errorf("userName(1002) after removal = %q, want 1002", got)
	}
}

// TestCredentialSkipsSameUser checks a child acting as the agent's own
// user and groups gets no credential (no set*id calls), and any other
// user, group or group set gets one.
func TestCredentialSkipsSameUser(t *testing.T) {
	self := agentIdentity()
	if self.uid != 0 || self.groups == nil {
		t.Skip("needs root")
	}
	same := &account{Name: "self", UID: self.uid, GID: self.gid, Groups: slices.Clone(self.groups)}
	if cred, err := same.credential(); err != nil || cred != nil {
		t.Errorf("credential of the agent's own identity = %+v, %v; want none", cred, err)
	}
	for name, acct := range map[string]*account{
		"uid":    {UID: self.uid + 1000, GID: self.gid, Groups: self.groups},
		"gid":    {UID: self.uid, GID: self.gid + 1000, Groups: self.groups},
		"groups": {UID: self.uid, GID: self.gid, Groups: append(slices.Clone(self.groups), 4242)},
	} {
		cred, err := acct.credential()
		if err != nil || cred == nil || cred.Uid != acct.UID || cred.Gid != acct.GID || !slices.Equal(cred.Groups, acct.Groups) {
			t.Errorf("%s: credential = %+v, %v; want %d:%d %v", name, cred, err, acct.UID, acct.GID, acct.Groups)
		}
	}
	if !sameGroups([]uint32{3, 1, 1}, []uint32{1, 3}) || sameGroups([]uint32{1}, []uint32{1, 3}) {
		t.Error("sameGroups compares sets wrongly")
	}
}
