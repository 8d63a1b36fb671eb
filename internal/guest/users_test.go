package guest

import (
	"os"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	fspb "github.com/denhq/den/api/envd/filesystem"
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
