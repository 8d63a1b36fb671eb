package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	den "github.com/denhq/den/sdk/go"
)

// portResponse is what one request through the traffic listener got.
type portResponse struct {
	status int
	body   string
}

// getPort sends GET / to the URL `den port` printed, connecting to the
// listener's loopback address with the URL's host name in Host (so that
// no resolver for *.localhost is needed), with header when it is set.
func getPort(t *testing.T, rawURL, header string) portResponse {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	target := "http://127.0.0.1:" + u.Port() + u.Path
	if u.RawQuery != "" {
		target += "?" + u.RawQuery
	}
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = u.Host
	if k, v, ok := strings.Cut(header, ": "); ok {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return portResponse{resp.StatusCode, string(body)}
}

// portURL runs `den port ID PORT --json`, which reads E2B_SANDBOX_URL from
// den up's env file.
func portURL(t *testing.T, in *instance, id, port string) (string, string) {
	t.Helper()
	var p struct{ URL, Header string }
	out := in.mustDen("port", "--data-dir", in.dataDir, id, port, "--json")
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.URL == "" || p.Header == "" {
		t.Fatalf("den port --json printed %q: %v", out, err)
	}
	return p.URL, p.Header
}

// TestPortsAsURLs serves a page with busybox httpd inside a sandbox and
// reaches it through den's sandbox traffic listener at the URL `den port`
// prints: with the access token, without it, on a port where nothing
// listens, and after a suspend (the request wakes the sandbox).
func TestPortsAsURLs(t *testing.T) {
	in := startDen(t, "")
	id := strings.TrimSpace(in.mustDen("create", testImage, "--timeout", "600"))
	in.mustDen("exec", id, "--", "sh", "-c", "mkdir -p /www && echo 'hello from the sandbox' > /www/index.html")
	c, err := den.NewClient(den.WithURL(in.url), den.WithAPIKey(in.key))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Sandbox(id).Exec(ctx, den.ExecOptions{Cmd: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/www"}, Tag: "httpd"})
	}()
	t.Cleanup(func() { cancel(); <-done })

	u, header := portURL(t, in, id, "8080")
	if !strings.HasPrefix(u, "http://8080-"+id+".localhost:") || !strings.HasPrefix(header, "X-Access-Token: ") {
		t.Fatalf("den port: %s, %s", u, header)
	}
	var got portResponse
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = getPort(t, u, header); got.status == http.StatusOK {
			break
		}
	}
	if got.status != http.StatusOK || got.body != "hello from the sandbox\n" {
		t.Fatalf("GET with the token: HTTP %d %q\nden log:\n%s", got.status, got.body, tail(in.log.String(), 3000))
	}
	if got := getPort(t, u, ""); got.status != http.StatusUnauthorized || !strings.Contains(got.body, "missing access token") {
		t.Errorf("GET without a token: HTTP %d %s", got.status, got.body)
	}
	if got := getPort(t, u, "X-Access-Token: wrong"); got.status != http.StatusUnauthorized || !strings.Contains(got.body, "invalid access token") {
		t.Errorf("GET with a wrong token: HTTP %d %s", got.status, got.body)
	}
	// A signed URL works without the header; --public opens the port,
	// --private closes it again.
	signed := strings.TrimSpace(in.mustDen("port", "--data-dir", in.dataDir, id, "8080", "--signed", "10m"))
	if !strings.Contains(signed, "den_signature=") {
		t.Fatalf("den port --signed printed %q", signed)
	}
	if got := getPort(t, signed, ""); got.status != http.StatusOK || got.body != "hello from the sandbox\n" {
		t.Errorf("GET of the signed URL: HTTP %d %q", got.status, got.body)
	}
	if got := getPort(t, strings.Replace(signed, "den_expires=", "den_expires=1", 1), ""); got.status != http.StatusUnauthorized {
		t.Errorf("GET of a signed URL with another expiry: HTTP %d %q", got.status, got.body)
	}
	open := strings.TrimSpace(in.mustDen("port", "--data-dir", in.dataDir, id, "8080", "--public"))
	if open != u {
		t.Errorf("den port --public printed %q, want %q alone", open, u)
	}
	if got := getPort(t, u, ""); got.status != http.StatusOK {
		t.Errorf("GET of a public port without a token: HTTP %d %q", got.status, got.body)
	}
	in.mustDen("port", "--data-dir", in.dataDir, id, "8080", "--private")
	if got := getPort(t, u, ""); got.status != http.StatusUnauthorized {
		t.Errorf("GET of a port made private again, without a token: HTTP %d %q", got.status, got.body)
	}
	free, _ := portURL(t, in, id, "8081")
	if got := getPort(t, free, header); got.status != http.StatusBadGateway || !strings.Contains(got.body, "nothing listens on port 8081 in the sandbox") {
		t.Errorf("GET of a port where nothing listens: HTTP %d %s", got.status, got.body)
	}

	in.mustDen("suspend", id)
	if s := sandboxState(t, in, id); s != "suspended" {
		t.Fatalf("state after den suspend: %s", s)
	}
	if got := getPort(t, u, header); got.status != http.StatusOK || got.body != "hello from the sandbox\n" {
		t.Errorf("GET of a suspended sandbox: HTTP %d %q\nden log:\n%s", got.status, got.body, tail(in.log.String(), 3000))
	}
	if s := sandboxState(t, in, id); s != "running" {
		t.Errorf("state after a request to a suspended sandbox: %s", s)
	}
}

// sandboxState is the state `den get` reports.
func sandboxState(t *testing.T, in *instance, id string) string {
	t.Helper()
	var sb struct{ State string }
	if err := json.Unmarshal([]byte(in.mustDen("get", id, "--json")), &sb); err != nil {
		t.Fatal(err)
	}
	return sb.State
}

// TestPortsBurst sends 10,000 requests at once to busybox httpd in a
// sandbox through its URL (`den bench ports`): every one must succeed,
// however long the sandbox's server takes (docs/benchmarks.md has the
// figures).
func TestPortsBurst(t *testing.T) {
	in := startDen(t, "")
	out := in.mustDen("bench", "ports", "--data-dir", in.dataDir, "--requests", "10000", "--concurrency", "10000", "--json", "-")
	var rep struct {
		Proxied struct {
			N, OK  int
			Errors []string
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("den bench ports --json: %v\n%s", err, out)
	}
	if rep.Proxied.N != 10000 || rep.Proxied.OK != 10000 {
		t.Fatalf("%d of %d proxied requests succeeded; errors: %v", rep.Proxied.OK, rep.Proxied.N, rep.Proxied.Errors)
	}
}
