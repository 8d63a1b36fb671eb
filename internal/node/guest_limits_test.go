package node

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem"
	"github.com/denhq/den/api/envd/process"
)

// hostileGuest answers like an envd agent, but with one message of size
// bytes: what code that has replaced a sandbox's agent could send.
func hostileGuest(t *testing.T, size int) *http.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		junk := io.LimitReader(zeros{}, int64(size))
		if strings.HasSuffix(r.URL.Path, "/Start") { // server stream: enveloped
			w.Header().Set("Content-Type", "application/connect+proto")
			var prefix [5]byte
			binary.BigEndian.PutUint32(prefix[1:], uint32(size))
			w.Write(prefix[:])
			io.Copy(w, junk)
			return
		}
		w.Header().Set("Content-Type", "application/proto") // unary
		io.Copy(w, junk)
	}))
	t.Cleanup(srv.Close)
	// Every call goes to guestURL, as on a DialGuest connection.
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}}}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestGuestMessagesAreBounded has den's own calls to a guest (the main
// process's start, a build step's process and working directory) read a
// 64 MiB message: each fails with resource_exhausted instead of
// buffering it.
func TestGuestMessagesAreBounded(t *testing.T) {
	hc := hostileGuest(t, 64<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(what string, err error) {
		t.Helper()
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "larger than configured max") {
			t.Errorf("%s from a guest that sends 64 MiB: %v; want resource_exhausted", what, err)
		}
	}
	stream, err := guestProcessClient(hc).Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "true"}}))
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
		t.Fatalf("received a message of %d bytes", len(stream.Msg().GetEvent().GetData().GetStdout()))
	}
	check("process start", stream.Err())
	stream.Close()
	_, err = guestFilesystemClient(hc).MakeDir(ctx, connect.NewRequest(&filesystem.MakeDirRequest{Path: "/w"}))
	check("make dir", err)

	// A message within the bound still gets through.
	_, err = guestFilesystemClient(hostileGuest(t, 1<<20)).MakeDir(ctx, connect.NewRequest(&filesystem.MakeDirRequest{Path: "/w"}))
	if err == nil || connect.CodeOf(err) == connect.CodeResourceExhausted {
		t.Errorf("a 1 MiB answer of zeros: %v; want it read, and refused as no MakeDirResponse", err)
	}
}
