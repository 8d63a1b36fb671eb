package server

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/store"
	"github.com/denhq/den/internal/testenv"
	den "github.com/denhq/den/sdk/go"
)

// addAdminKey stores an admin key of tenant A and returns its secret.
func (e *testEnv) addAdminKey() string {
	e.t.Helper()
	secret, hash, err := NewAPIKey()
	if err != nil {
		e.t.Fatal(err)
	}
	k := &store.APIKey{ID: "key-admin", Tenant: tenantA, Hash: hash, Admin: true}
	if err := e.store.PutAPIKey(context.Background(), k); err != nil {
		e.t.Fatalf("put api key: %v", err)
	}
	return secret
}

// addImage records a one-file image called name, unlike any other, and
// returns its ID.
func (e *testEnv) addImage(name string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "name"), []byte(name), 0o644); err != nil {
		e.t.Fatal(err)
	}
	img, err := e.srv.cfg.Images.ImportDir(context.Background(), dir, name, image.Config{})
	if err != nil {
		e.t.Fatalf("import %s: %v", name, err)
	}
	return img.ID
}

// sdkClient is an SDK client of the test server with key.
func (e *testEnv) sdkClient(key string) *den.Client {
	e.t.Helper()
	c, err := den.NewClient(den.Options{URL: e.url, APIKey: key, HTTPClient: e.client})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// readEvents decodes an NDJSON answer.
func readEvents(t *testing.T, body []byte) []rest.ImageEvent {
	t.Helper()
	var evs []rest.ImageEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var ev rest.ImageEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q is not an event: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestImageRegistryRoundTrip pushes an image to a registry on loopback,
// pulls it back under another name and checks that both are the same
// image, through the REST API and the SDK.
func TestImageRegistryRoundTrip(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKey()
	c := e.sdkClient(admin)
	ctx := testCtx(t)
	ref := testenv.Registry(t, testenv.RegistryOptions{}) + "/den/busybox:1"

	status, body := e.do("POST", "/v1/images/push", admin, `{"image":"busybox","dest":"`+ref+`"}`)
	evs := readEvents(t, body)
	if status != 200 || len(evs) < 2 || evs[0].Progress == nil || evs[len(evs)-1].Digest == "" {
		t.Fatalf("push: status %d, answer:\n%s", status, body)
	}
	digest := evs[len(evs)-1].Digest
	for _, ev := range evs[:len(evs)-1] {
		if ev.Progress == nil || (ev.Progress.Phase != rest.PhaseUploading && ev.Progress.Phase != rest.PhaseExists) {
			t.Fatalf("push: want only uploading and exists progress before the digest, got %s", body)
		}
	}

	var phases []string
	pulled, err := c.Images().Pull(ctx, ref, den.PullOptions{Progress: func(p den.Progress) { phases = append(phases, p.Phase) }})
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := c.Images().Inspect(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Name != ref || pulled.ID != busybox.ID || pulled.Digest != digest {
		t.Fatalf("pulled %+v, want ID %s and digest %s", pulled, busybox.ID, digest)
	}
	if len(phases) == 0 || phases[0] != rest.PhaseResolving {
		t.Fatalf("pull progress phases %v, want resolving first", phases)
	}

	d, err := c.Images().Inspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Layers) != 1 || d.Layers[0].Digest == "" || d.Layers[0].Size == 0 || d.Layers[0].UnpackedSize == 0 ||
		d.Layers[0].DiffID == "" || !cmp.Equal(d.Config.Env, []string{image.DefaultPath}) || len(d.History) != 1 {
		t.Fatalf("inspect %s = %+v", ref, d)
	}

	_, err = c.Images().Pull(ctx, strings.TrimSuffix(ref, ":1")+":nosuch", den.PullOptions{})
	if !den.IsNotFound(err) {
		t.Fatalf("pull of a missing tag: %v, want not found", err)
	}
}

// TestImagePullFromNowhere: an unreachable registry is unavailable (503),
// whether it fails before the stream begins or inside it.
func TestImagePullFromNowhere(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close()
	_, err = e.sdkClient(e.addAdminKey()).Images().Pull(testCtx(t), host+"/x:1", den.PullOptions{})
	var api *den.APIError
	if !errors.As(err, &api) || api.Code != "unavailable" || api.Status != 503 || !strings.Contains(api.Message, "connection refused") {
		t.Fatalf("pull from a closed port: %v, want unavailable naming the refused connection", err)
	}
}

func TestImageTagExportPrune(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKey()
	c := e.sdkClient(admin)
	ctx := testCtx(t)
	var tagged rest.Image
	e.doJSON("POST", "/v1/images/busybox/tag", admin, `{"name":"bb:2"}`, http.StatusCreated, &tagged)
	if tagged.Name != "bb:2" {
		t.Fatalf("tag answered %+v", tagged)
	}
	bb, err := c.Images().Get(ctx, "busybox")
	if err != nil || bb.ID != tagged.ID {
		t.Fatalf("tag: %+v, busybox %+v, %v", tagged, bb, err)
	}

	for _, format := range []string{rest.ExportDockerArchive, rest.ExportOCI} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := c.Images().Export(ctx, "bb:2", format, &buf); err != nil {
				t.Fatal(err)
			}
			first := map[string]string{rest.ExportDockerArchive: "manifest.json", rest.ExportOCI: "oci-layout"}[format]
			if !tarHas(t, buf.Bytes(), first) {
				t.Fatalf("%s export lacks %s", format, first)
			}
			back, err := c.Images().Import(ctx, &buf, "back-"+format)
			if err != nil {
				t.Fatal(err)
			}
			if back.ID != bb.ID {
				t.Fatalf("export and import changed the ID: %s, want %s", back.ID, bb.ID)
			}
		})
	}
	req, _ := http.NewRequest("GET", e.url+"/v1/images/bb:2/export", nil)
	req.Header.Set("X-API-Key", e.keyA) // reading needs no admin key
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="bb_2.tar"` {
		t.Fatalf("export answer: %d %v", resp.StatusCode, resp.Header)
	}

	if err := c.Images().Remove(ctx, e.addImage("doomed")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Images().Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Images().Get(ctx, "busybox"); err != nil {
		t.Fatalf("prune removed a used image: %v", err)
	}
}

// tarHas reports whether the tar b has an entry name.
func tarHas(t *testing.T, b []byte, name string) bool {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatalf("not a tar: %v", err)
		}
		if hdr.Name == name {
			return true
		}
	}
}

// TestEventStreamThrottlesProgress: within progressInterval only phase
// changes and a layer's final count go out.
func TestEventStreamThrottlesProgress(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: t0}
	rec := httptest.NewRecorder()
	st := &eventStream{w: rec, rc: http.NewResponseController(rec), now: clock.Now, last: map[string]progressMark{}}
	reports := []struct {
		p       image.Progress
		advance bool // move the clock past progressInterval first
	}{
		{image.Progress{Phase: "resolving"}, false},
		{image.Progress{Phase: "downloading", Detail: "a", Current: 0, Total: 100}, false},
		{image.Progress{Phase: "downloading", Detail: "b", Current: 0, Total: 50}, false},
		{image.Progress{Phase: "downloading", Detail: "a", Current: 10, Total: 100}, false}, // too soon
		{image.Progress{Phase: "downloading", Detail: "a", Current: 20, Total: 100}, true},
		{image.Progress{Phase: "downloading", Detail: "a", Current: 30, Total: 100}, false}, // too soon
		{image.Progress{Phase: "downloading", Detail: "b", Current: 50, Total: 50}, false},  // final
		{image.Progress{Phase: "unpacking", Detail: "b"}, false},                            // new phase
	}
	for _, r := range reports {
		if r.advance {
			clock.Advance(progressInterval)
		}
		st.progress(r.p)
	}
	want := `{"progress":{"phase":"resolving","current":0,"total":0}}
{"progress":{"phase":"downloading","current":0,"total":100,"detail":"a"}}
{"progress":{"phase":"downloading","current":0,"total":50,"detail":"b"}}
{"progress":{"phase":"downloading","current":20,"total":100,"detail":"a"}}
{"progress":{"phase":"downloading","current":50,"total":50,"detail":"b"}}
{"progress":{"phase":"unpacking","current":0,"total":0,"detail":"b"}}
`
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Fatalf("stream (-want +got):\n%s", diff)
	}
	if ct := rec.Header().Get("Content-Type"); ct != rest.NDJSONContentType {
		t.Fatalf("Content-Type = %q", ct)
	}
}

// TestImageRefWithSlashes: a registry name reaches the image routes with
// its slashes escaped.
func TestImageRefWithSlashes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	admin := e.addAdminKey()
	name := "registry.example.com/team/app:v1"
	e.doJSON("POST", "/v1/images/busybox/tag", admin, `{"name":"`+name+`"}`, http.StatusCreated, nil)
	var d rest.ImageDetails
	e.doJSON("GET", "/v1/images/"+url.PathEscape(name), e.keyA, "", http.StatusOK, &d)
	if d.Name != name {
		t.Fatalf("got %+v", d.Image)
	}
}
