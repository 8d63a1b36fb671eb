package den_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

const testKey = "test-key"

// newREST starts a fake server without a guest agent and a client of it.
func newREST(t *testing.T) (*dentest.Server, *den.Client) {
	t.Helper()
	srv := dentest.NewServer(dentest.Config{APIKey: testKey})
	t.Cleanup(srv.Close)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestNewClientValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []den.Option
		want string
	}{
		{"no url", nil, den.ErrNotConfigured.Error()},
		{"bad scheme", []den.Option{den.WithURL("ftp://x")}, `den: invalid server URL "ftp://x": want http(s)://host[:port]`},
		{"no host", []den.Option{den.WithURL("http://")}, `den: invalid server URL "http://": want http(s)://host[:port]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := den.NewClient(tc.opts...)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSandboxLifecycle(t *testing.T) {
	ctx := context.Background()
	_, c := newREST(t)
	timeout := int64(60)
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Name: "web", Metadata: map[string]string{"team": "a"}, Timeout: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	if sb.ID == "" || sb.Image != rest.DefaultImage || sb.State != rest.StateRunning || sb.Timeout != 60 {
		t.Fatalf("created %+v", sb.Sandbox)
	}
	got, err := c.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sb.ID {
		t.Fatalf("Get by name = %s, want %s", got.ID, sb.ID)
	}
	upd, err := c.SetTimeout(ctx, sb.ID, 0)
	if err != nil || upd.Timeout != 0 {
		t.Fatalf("SetTimeout = %+v, %v", upd, err)
	}
	if err := c.Delete(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, sb.ID)
	if !den.IsNotFound(err) {
		t.Fatalf("Get after delete: %v, want not found", err)
	}
	want := "get sandbox " + sb.ID + ": sandbox " + sb.ID + " not found (not_found)"
	if err.Error() != want {
		t.Fatalf("error = %q, want %q", err, want)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	ctx := context.Background()
	_, c := newREST(t)
	var want []string
	for i := range 5 {
		md := map[string]string{"team": "a"}
		if i%2 == 1 {
			md["team"] = "b"
		}
		sb, err := c.Create(ctx, rest.CreateSandboxRequest{Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			want = append(want, sb.ID)
		}
	}
	page, err := c.List(ctx, den.ListOptions{Metadata: map[string]string{"team": "a"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Sandboxes) != 2 || page.NextPageToken == "" {
		t.Fatalf("first page: %d sandboxes, token %q", len(page.Sandboxes), page.NextPageToken)
	}
	var got []string
	for s, err := range c.All(ctx, den.ListOptions{Metadata: map[string]string{"team": "a"}, Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s.ID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("All (-want +got):\n%s", diff)
	}
}

func TestAuthError(t *testing.T) {
	srv, _ := newREST(t)
	c, err := den.NewClient(den.WithURL(srv.URL), den.WithAPIKey("wrong"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Info(context.Background())
	var apiErr *den.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || !den.IsUnauthenticated(err) {
		t.Fatalf("err = %#v, want 401 unauthenticated", err)
	}
}

func TestImages(t *testing.T) {
	ctx := context.Background()
	_, c := newREST(t)
	img, err := c.Images().Import(ctx, strings.NewReader("not really a tar"), "mine")
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "mine" || img.Size != int64(len("not really a tar")) {
		t.Fatalf("imported %+v", img)
	}
	list, err := c.Images().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
	}
	if diff := cmp.Diff([]string{"base", "mine"}, names); diff != "" {
		t.Fatalf("images (-want +got):\n%s", diff)
	}
	if err := c.Images().Remove(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Images().Get(ctx, "mine"); !den.IsNotFound(err) {
		t.Fatalf("Get removed image: %v", err)
	}
}

func TestFromEnvDir(t *testing.T) {
	dir := t.TempDir()
	env := "# written by den up\nexport DEN_URL=\"http://127.0.0.1:7070\"\nDEN_API_KEY='k1'\n\n"
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, key string
		want           den.Options
		wantErr        error
	}{
		{name: "file", want: den.Options{URL: "http://127.0.0.1:7070", APIKey: "k1"}},
		{name: "env wins", url: "http://h:1", want: den.Options{URL: "http://h:1", APIKey: "k1"}},
		{name: "both env", url: "http://h:1", key: "k2", want: den.Options{URL: "http://h:1", APIKey: "k2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(den.EnvURL, tc.url)
			t.Setenv(den.EnvAPIKey, tc.key)
			got, err := den.FromEnvDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("options (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Setenv(den.EnvURL, "")
		t.Setenv(den.EnvAPIKey, "")
		if _, err := den.FromEnvDir(t.TempDir()); !errors.Is(err, den.ErrNotConfigured) {
			t.Fatalf("err = %v, want ErrNotConfigured", err)
		}
	})
}

func TestReadEnvFileErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(p, []byte("DEN_URL=x\nnot a pair\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := den.ReadEnvFile(p)
	want := "read env file " + p + ` line 2: want KEY=VALUE, got "not a pair"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// A client made without an HTTP client reuses its connections when many
// calls run at once: a second wave of 64 concurrent calls dials none.
func TestClientReusesConnectionsUnderConcurrency(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond) // keep the calls of a wave in flight together
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	wave := func() int {
		mu.Lock()
		before := conns
		mu.Unlock()
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				if err := c.Delete(context.Background(), fmt.Sprintf("sb-%d", i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return conns - before
	}
	if first := wave(); first == 0 {
		t.Fatal("the first wave dialed no connection")
	}
	if second := wave(); second != 0 {
		t.Fatalf("the second wave of 64 calls dialed %d new connections, want 0 (idle ones reused)", second)
	}
}
