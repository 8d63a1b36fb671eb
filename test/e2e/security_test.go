package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The security tests attack a real `den up` from outside (the API, the
// sandbox traffic listener, the SSH gateway) and from inside a sandbox.
// What a sandbox sends is untrusted: nothing it does or answers may reach
// the host's files, the host's services or another tenant.

// reply is the status and body of one raw HTTP exchange.
type reply struct {
	status int
	body   string
}

// code is the "code" of a JSON error body ("" when there is none).
func (r reply) code() string {
	var e struct {
		Code any `json:"code"`
	}
	if json.Unmarshal([]byte(r.body), &e) != nil || e.Code == nil {
		return ""
	}
	return fmt.Sprint(e.Code)
}

// do sends one request with the given raw query and headers (and Host,
// when "Host" is among them) and returns what came back.
func do(t *testing.T, method, base, path, rawQuery string, body io.Reader, headers map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = rawQuery
	if p, err := url.PathUnescape(path); err == nil && p != path {
		req.URL.Path, req.URL.RawPath = p, path // send the path as written
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s?%.200s: %v", method, path, rawQuery, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, string(b)}
}

// noRedirects is a client that shows a redirect instead of following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// randomName is a name no file has yet.
func randomName(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// hostSecret writes a file on the host, outside anything a sandbox
// mounts, and returns its path and content.
func hostSecret(t *testing.T) (string, string) {
	t.Helper()
	p := filepath.Join(os.TempDir(), randomName("den-host-secret-"))
	content := randomName("host secret ")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p, content
}

// filesTarget is one way to reach a sandbox's envd /files: den's API with
// the API key, or the sandbox traffic listener with the access token.
type filesTarget struct {
	name, base, path string
	headers          map[string]string
}

func (ft filesTarget) get(t *testing.T, rawQuery string) reply {
	t.Helper()
	return do(t, "GET", ft.base, ft.path, rawQuery, nil, ft.headers)
}

// post uploads content as the "file" part of a multipart body, named
// filename (a path, as the e2b SDKs send).
func (ft filesTarget) post(t *testing.T, rawQuery, filename, content string) reply {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := map[string]string{"Content-Type": mw.FormDataContentType()}
	for k, v := range ft.headers {
		h[k] = v
	}
	part, err := mw.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(part, content)
	mw.Close()
	return do(t, "POST", ft.base, ft.path, rawQuery, &buf, h)
}

// filesTargets are the two ways in to sandbox id's /files.
func filesTargets(t *testing.T, in *instance, id string) []filesTarget {
	env := e2bEnvFile(t, in.dataDir)
	_, header := portURL(t, in, id, "49983")
	_, token, _ := strings.Cut(header, ": ")
	return []filesTarget{
		{name: "api", base: in.url, path: "/v1/sandboxes/" + id + "/envd/files", headers: map[string]string{"X-API-Key": in.key}},
		{name: "traffic", base: env["E2B_SANDBOX_URL"], path: "/files", headers: map[string]string{
			"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "49983", "X-Access-Token": token}},
	}
}

// TestSecurityFilePaths sends hostile paths to a sandbox's /files through
// den's API and through the sandbox traffic listener: "..", encoded
// "%2e%2e" and absolute paths resolve inside the sandbox (a marker only
// the sandbox has is read, a host file is not found), a NUL byte and
// over-long names are 400 invalid_argument, a query over 1 MiB is 431,
// an upload named "../../x" lands in the sandbox, sandbox IDs made of
// "..", NUL or 4,000 characters name no sandbox, and guest routes den
// keeps for itself cannot be reached by a ".." in the URL path.
func TestSecurityFilePaths(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "900")
	marker := randomName("sandbox marker ")
	in.mustDen("exec", id, "--", "sh", "-c", "echo -n '"+marker+"' > /etc/den-marker")
	secret, secretContent := hostSecret(t)
	q := func(p string) string { return "path=" + url.QueryEscape(p) }

	for _, ft := range filesTargets(t, in, id) {
		t.Run(ft.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, query string
				status      int
				code, body  string // the error code, or the body of a 200
			}{
				{"dot-dot relative", q("../../../../../../etc/den-marker"), 200, "", marker},
				{"dot-dot encoded", "path=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fden-marker", 200, "", marker},
				{"dot-dot absolute", q("/root/../../../etc/./den-marker"), 200, "", marker},
				{"host file, absolute", q(secret), 404, "not_found", ""},
				{"host file, dot-dot", q("../../../../../.." + secret), 404, "not_found", ""},
				{"host proc root", q("/proc/1/root" + secret), 404, "not_found", ""},
				{"NUL byte", "path=%2Fetc%2Fden-marker%00.txt", 400, "invalid_argument", ""},
				{"name over NAME_MAX", q(strings.Repeat("a", 300)), 400, "invalid_argument", ""},
				{"path over PATH_MAX", q(strings.Repeat("d/", 5000) + "f"), 400, "invalid_argument", ""},
			} {
				got := ft.get(t, tc.query)
				if got.status != tc.status || got.code() != tc.code || (tc.status == 200 && got.body != tc.body) {
					t.Errorf("%s: GET ?%.80s: %d %.300q; want %d %s %q", tc.name, tc.query, got.status, got.body, tc.status, tc.code, tc.body)
				}
				if strings.Contains(got.body, secretContent) {
					t.Errorf("%s: the host's secret came back", tc.name)
				}
			}
			// The request line and headers are bounded before any handler runs.
			addr := strings.TrimPrefix(ft.base, "http://")
			if got := oversized(t, addr, "GET "+ft.path+"?path=", " HTTP/1.1\r\nHost: x\r\n\r\n", 2<<20); !strings.HasPrefix(got, "HTTP/1.1 431") {
				t.Errorf("GET with a 2 MiB path: %q, want 431", got)
			}
			// An upload named with ".." lands inside the sandbox.
			name := randomName("den-up-")
			if got := ft.post(t, "", "../../../../../tmp/"+name, "uploaded"); got.status != 200 {
				t.Fatalf("upload ../../tmp/%s: %d %s", name, got.status, got.body)
			}
			if out := in.mustDen("exec", id, "--", "cat", "/tmp/"+name); out != "uploaded" {
				t.Errorf("/tmp/%s in the sandbox: %q", name, out)
			}
			if _, err := os.Stat("/tmp/" + name); err == nil {
				t.Errorf("the upload ../../tmp/%s reached the host's /tmp", name)
			}
			if got := ft.post(t, "path=%2Ftmp%2Fx%00y", "", "nul"); got.status != 400 || got.code() != "invalid_argument" {
				t.Errorf("upload to a path with NUL: %d %s", got.status, got.body)
			}
		})
	}

	t.Run("hostile sandbox IDs", func(t *testing.T) {
		env := e2bEnvFile(t, in.dataDir)
		for _, bad := range []string{"..", "..%2F..%2Fetc", "%2e%2e", id + "%2F..", "a%00b", strings.Repeat("x", 4000)} {
			got := do(t, "GET", in.url, "/v1/sandboxes/"+bad+"/envd/files", q("/etc/den-marker"), nil, map[string]string{"X-API-Key": in.key})
			if got.status != 404 && got.status != 307 {
				t.Errorf("GET /v1/sandboxes/%.40s/envd/files: %d %.200s; want 404", bad, got.status, got.body)
			}
			raw, _ := url.PathUnescape(bad)
			if strings.ContainsRune(raw, 0) {
				continue // no client sends a NUL in a header
			}
			got = do(t, "GET", env["E2B_SANDBOX_URL"], "/files", q("/etc/den-marker"), nil, map[string]string{
				"E2b-Sandbox-Id": raw, "E2b-Sandbox-Port": "49983", "X-Access-Token": "x"})
			if got.status != 502 && got.status != 400 {
				t.Errorf("traffic with E2b-Sandbox-Id %.40q: %d %.200s; want 502 (no such sandbox) or 400", raw, got.status, got.body)
			}
			if strings.Contains(got.body, marker) {
				t.Errorf("E2b-Sandbox-Id %.40q read the sandbox's file", raw)
			}
		}
	})
	t.Run("internal guest route", func(t *testing.T) {
		targets := filesTargets(t, in, id)
		for _, ft := range targets {
			base := strings.TrimSuffix(ft.path, "/files")
			for _, p := range []string{"/init", "/..%2Finit", "/files%2F..%2Finit", "/%2e%2e/init", "//init"} {
				h := map[string]string{"Content-Type": "application/json"}
				for k, v := range ft.headers {
					h[k] = v
				}
				got := do(t, "POST", ft.base, base+p, "", strings.NewReader(`{"env":{"PWNED":"1"}}`), h)
				t.Logf("%s: POST %s: %d %s", ft.name, p, got.status, strings.TrimSpace(got.body))
				if got.status != 404 && got.status != 307 {
					t.Errorf("%s: POST %s: %d %s; want the route refused (404) or redirected to its clean path (307)", ft.name, p, got.status, got.body)
				}
			}
		}
		if out := in.mustDen("exec", id, "--", "sh", "-c", "echo ${PWNED:-unset}"); out != "unset\n" {
			t.Errorf("a refused POST /init changed the sandbox's env: %q", out)
		}
	})
}

// TestSecuritySymlinks makes symlinks inside a sandbox that point out of
// it (to /, to /etc/shadow, to a file that exists only on the host) and
// reads and writes through them with the file API and `den cp`: what is
// read is the sandbox's own file, a host-only file is not found, a write
// changes nothing on the host, and `den cp` writes regular files inside
// its local target.
func TestSecuritySymlinks(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "900")
	marker := randomName("sandbox marker ")
	secret, secretContent := hostSecret(t)
	in.mustDen("exec", id, "--", "sh", "-c", fmt.Sprintf(`echo -n '%s' > /etc/den-marker
ln -s / /tmp/root && ln -s /etc/shadow /tmp/shadow && ln -s /etc/den-marker /tmp/marker &&
ln -s %s /tmp/host && ln -s %s /tmp/host2 && ln -s ../../../../../../etc/den-marker /tmp/up`, marker, secret, secret))
	sandboxShadow := in.den(nil, "exec", id, "--", "cat", "/etc/shadow")
	q := func(p string) string { return "path=" + url.QueryEscape(p) }

	for _, ft := range filesTargets(t, in, id) {
		t.Run(ft.name, func(t *testing.T) {
			// The other target's writes below replaced /tmp/host.
			in.mustDen("exec", id, "--", "sh", "-c", fmt.Sprintf("rm -f %s && ln -sfn %s /tmp/host", secret, secret))
			for _, p := range []string{"/tmp/marker", "/tmp/root/etc/den-marker", "/tmp/up", "/tmp/root/tmp/root/etc/den-marker"} {
				if got := ft.get(t, q(p)); got.status != 200 || got.body != marker {
					t.Errorf("GET %s: %d %q; want the sandbox's marker", p, got.status, got.body)
				}
			}
			for _, p := range []string{"/tmp/host", "/tmp/root" + secret} {
				if got := ft.get(t, q(p)); got.status != 404 || got.code() != "not_found" {
					t.Errorf("GET %s (a link to the host's %s): %d %.300q; want 404 not_found", p, secret, got.status, got.body)
				}
			}
			got := ft.get(t, q("/tmp/shadow"))
			switch {
			case sandboxShadow.code == 0 && (got.status != 200 || got.body != sandboxShadow.stdout):
				t.Errorf("GET /tmp/shadow: %d %.200q; want the sandbox's /etc/shadow", got.status, got.body)
			case sandboxShadow.code != 0 && got.status != 404:
				t.Errorf("GET /tmp/shadow with no /etc/shadow in the sandbox: %d %.200q; want 404", got.status, got.body)
			}
			// Writes through the links stay in the sandbox.
			for _, p := range []string{"/tmp/host", "/tmp/root" + secret} {
				if got := ft.post(t, q(p), "x", "overwritten"); got.status != 200 {
					t.Errorf("POST %s: %d %s", p, got.status, got.body)
				}
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != secretContent {
				t.Fatalf("the host's %s after writes through sandbox links: %q %v", secret, b, err)
			}
		})
	}

	t.Run("den cp", func(t *testing.T) {
		in.mustDen("exec", id, "--", "rm", "-f", secret) // what the writes above made in the sandbox
		dir := t.TempDir()
		in.mustDen("cp", id+":/tmp/marker", dir)
		in.mustDen("cp", id+":/tmp/root/etc/den-marker", filepath.Join(dir, "via-root"))
		for _, name := range []string{"marker", "via-root"} {
			p := filepath.Join(dir, name)
			fi, err := os.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("den cp wrote %s: %v %v; want a regular file", p, fi, err)
			}
			if b, _ := os.ReadFile(p); string(b) != marker {
				t.Errorf("%s: %q, want the sandbox's marker", name, b)
			}
		}
		if res := in.den(nil, "cp", id+":/tmp/host2", filepath.Join(dir, "host")); res.code == 0 || !strings.Contains(res.stderr, "no such file or directory (not_found)") {
			b, _ := os.ReadFile(filepath.Join(dir, "host"))
			t.Errorf("den cp of a link to a host-only file: exit %d, %q; wrote %q", res.code, res.stderr, b)
		}
		for _, remote := range []string{"/tmp/root", "/tmp/.."} {
			if res := in.den(nil, "cp", id+":"+remote, dir); res.code == 0 {
				t.Errorf("den cp %s (a directory): exit 0", remote)
			}
		}
		// A local destination that is a link out of dir is replaced,
		// not written through.
		outside := filepath.Join(t.TempDir(), "outside")
		os.WriteFile(outside, []byte("local"), 0o644)
		link := filepath.Join(dir, "link")
		if err := os.Symlink(outside, link); err != nil {
			t.Fatal(err)
		}
		in.mustDen("cp", id+":/tmp/marker", link)
		if b, _ := os.ReadFile(outside); string(b) != "local" {
			t.Errorf("den cp wrote through a local symlink to %s: %q", outside, b)
		}
		// Upload with ".." in the sandbox path stays in the sandbox.
		src := filepath.Join(dir, "src")
		os.WriteFile(src, []byte("from cp"), 0o644)
		name := randomName("den-cp-")
		in.mustDen("cp", src, id+":/tmp/../../../tmp/"+name)
		if out := in.mustDen("exec", id, "--", "cat", "/tmp/"+name); out != "from cp" {
			t.Errorf("/tmp/%s: %q", name, out)
		}
		if _, err := os.Stat("/tmp/" + name); err == nil {
			t.Errorf("den cp to ../../tmp/%s reached the host's /tmp", name)
		}
	})
	if b, err := os.ReadFile(secret); err != nil || string(b) != secretContent {
		t.Fatalf("the host's %s at the end: %q %v", secret, b, err)
	}
}

// oversized sends head, n bytes of "a" and tail to addr and returns the
// status line of the answer. It writes while it reads: the server
// answers before it has read it all.
func oversized(t *testing.T, addr, head, tail string, n int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	go func() {
		io.WriteString(c, head)
		c.Write(bytes.Repeat([]byte("a"), n))
		io.WriteString(c, tail)
	}()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %d bytes from %s: %v", n, addr, err)
	}
	return strings.TrimSpace(line)
}

// TestSecurityOversized sends headers over 1 MiB to the API listener, the
// sandbox traffic listener's envd route and its port proxy (431 each,
// and den keeps serving), and JSON bodies over 1 MiB to /v1 and the E2B
// facade (400 with each one's error shape). An upload past the sandbox's
// disk is TestUploadPastDiskQuota's 507.
func TestSecurityOversized(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "900")
	env := e2bEnvFile(t, in.dataDir)
	traffic := strings.TrimPrefix(env["E2B_SANDBOX_URL"], "http://")
	api := strings.TrimPrefix(in.url, "http://")
	for _, tc := range []struct{ name, addr, host string }{
		{"api", api, api},
		{"envd", traffic, "49983-" + id + ".localhost"},
		{"port proxy", traffic, "8080-" + id + ".localhost"},
	} {
		head := "GET / HTTP/1.1\r\nHost: " + tc.host + "\r\nX-Big: "
		if got := oversized(t, tc.addr, head, "\r\n\r\n", 2<<20); !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("%s: a 2 MiB header got %q, want 431", tc.name, got)
		}
	}
	if ids := jsonIDs(in.mustDen("ls", "--json")); len(ids) != 1 || ids[0] != id {
		t.Errorf("den ls after the big headers: %v", ids)
	}

	big := `{"image":"` + strings.Repeat("a", 2<<20) + `"}`
	got := do(t, "POST", in.url, "/v1/sandboxes", "", strings.NewReader(big), map[string]string{"X-API-Key": in.key, "Content-Type": "application/json"})
	if want := (reply{400, `{"code":"invalid_argument","message":"request body is larger than 1048576 bytes"}` + "\n"}); got != want {
		t.Errorf("POST /v1/sandboxes with 2 MiB: %d %.300q; want %d %q", got.status, got.body, want.status, want.body)
	}
	big = `{"templateID":"` + strings.Repeat("a", 2<<20) + `"}`
	got = do(t, "POST", in.url, "/sandboxes", "", strings.NewReader(big), map[string]string{"X-API-Key": env["E2B_API_KEY"], "Content-Type": "application/json"})
	if want := (reply{400, `{"code":400,"message":"request body is larger than 1048576 bytes"}` + "\n"}); got != want {
		t.Errorf("E2B POST /sandboxes with 2 MiB: %d %.300q; want %d %q", got.status, got.body, want.status, want.body)
	}
	if ids := jsonIDs(in.mustDen("ls", "--json")); len(ids) != 1 {
		t.Errorf("den ls after the big bodies: %v", ids)
	}
}

// slowClient is a connection that sends the start of a request a byte at
// a time (slowloris) until the server closes it.
type slowClient struct {
	c      net.Conn
	closed chan struct{} // closed when the server closed the connection
}

// slowloris opens n connections to addr that send head at once, then
// payload a byte at a time.
func slowloris(t *testing.T, addr, head, payload string, n int, stop <-chan struct{}) []*slowClient {
	t.Helper()
	var cs []*slowClient
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", len(cs), err)
		}
		t.Cleanup(func() { c.Close() })
		// A server that never cuts it fails the test rather than hang it.
		c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		sc := &slowClient{c: c, closed: make(chan struct{})}
		cs = append(cs, sc)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := io.Copy(io.Discard, c); err == nil || !isTimeout(err) {
				close(sc.closed)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := c.Write([]byte{payload[i%len(payload)]}); err != nil {
					return
				}
				select {
				case <-sc.closed:
					return
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond): // the attack's pace
				}
			}
		}()
	}
	return cs
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestSecuritySlowloris holds 100 connections to each of den's API and
// sandbox traffic listeners that send their headers a byte at a time,
// and 20 to each that do the same over cleartext HTTP/2: meanwhile the
// API, envd and a sandbox's port still answer, and every slow connection
// is cut (HTTP/1 after the listeners' 10 s header timeout, HTTP/2 after
// their 30 s idle timeout).
func TestSecuritySlowloris(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "900")
	in.mustDen("exec", id, "--", "sh", "-c", "mkdir -p /www && echo -n 'port ok' > /www/index.html && httpd -p 8080 -h /www")
	u, header := portURL(t, in, id, "8080")
	env := e2bEnvFile(t, in.dataDir)
	traffic := strings.TrimPrefix(env["E2B_SANDBOX_URL"], "http://")
	api := strings.TrimPrefix(in.url, "http://")

	stop := make(chan struct{})
	defer close(stop)
	slowHTTP := func(host string) string {
		return "GET / HTTP/1.1\r\nHost: " + host + "\r\nX-Slow: " + strings.Repeat("z", 1000)
	}
	slow := slowloris(t, api, "", slowHTTP(api), 100, stop)
	slow = append(slow, slowloris(t, traffic, "", slowHTTP("8080-"+id+".localhost"), 100, stop)...)
	// Cleartext HTTP/2: the preface, SETTINGS, and a HEADERS frame that
	// announces 16,000 bytes and gets them a byte at a time. HTTP/2 has
	// no header timeout: the listeners' idle timeout (30 s) cuts these.
	h2c := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00" + "\x00\x3e\x80\x01\x00\x00\x00\x00\x01"
	for _, addr := range []string{api, traffic} {
		slow = append(slow, slowloris(t, addr, h2c, "z", 20, stop)...)
	}

	if got := poll(t, func() (string, bool) { r := getPort(t, u, header); return r.body, r.status == 200 }); got != "port ok" {
		t.Errorf("the sandbox's port during the attack: %q", got)
	}
	if ids := jsonIDs(in.mustDen("ls", "--json")); len(ids) != 1 {
		t.Errorf("den ls during the attack: %v", ids)
	}
	if out := in.mustDen("exec", id, "--", "echo", "exec ok"); out != "exec ok\n" {
		t.Errorf("den exec during the attack: %q", out)
	}
	expectCut(t, slow)
}

// expectCut waits for the server to close every slow connection; it logs
// how many were still open when called.
func expectCut(t *testing.T, slow []*slowClient) {
	t.Helper()
	open := 0
	for _, sc := range slow {
		select {
		case <-sc.closed:
		default:
			open++
		}
	}
	t.Logf("%d of %d slow connections were still open when the normal requests had been served", open, len(slow))
	for i, sc := range slow {
		select {
		case <-sc.closed:
		case <-time.After(3 * time.Minute):
			t.Fatalf("slow connection %d (of %d) was not cut", i, len(slow))
		}
	}
}

// sandboxAddr is the IPv4 address of eth0 in sandbox id ("" when it has
// no network).
func (in *instance) sandboxAddr(id string) string {
	out := in.den(nil, "exec", id, "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	return ""
}

// hostAddrs are the host's IPv4 addresses outside loopback.
func hostAddrs(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

// TestSecuritySandboxReach has a sandbox try the host and its
// neighbours: a host server on every address (0.0.0.0), den's API, its
// sandbox traffic listener and SSH gateway, by 127.0.0.1 and by each of
// the host's other addresses, and a server in another sandbox by its
// address. None answers, while each server answers where it should (the
// host server on the host, the neighbour's inside it). The metadata
// address and den's API by the gateway are TestNetwork's.
func TestSecuritySandboxReach(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host-secret") }),
		ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	hostPort := ln.Addr().(*net.TCPAddr).Port

	in := startDen(t, "")
	a, b := in.create("--timeout", "900"), in.create("--timeout", "900")
	for _, id := range []string{a, b} {
		in.mustDen("exec", id, "--", "sh", "-c", "mkdir -p /www && echo -n 'self "+id+"' > /www/index.html && httpd -p 8080 -h /www")
	}
	bAddr := in.sandboxAddr(b)
	if bAddr == "" {
		t.Fatalf("sandbox %s has no eth0 address: den up gives every sandbox a network", b)
	}
	// Controls: each sandbox reaches its own server; the host reaches
	// its server on every address.
	for _, id := range []string{a, b} {
		if got := in.fetch(id, "127.0.0.1", 8080); got != "self "+id {
			t.Fatalf("sandbox %s cannot reach its own server: %q", id, got)
		}
	}
	ports := map[string]int{"host server": hostPort}
	for name, u := range map[string]string{"den's API": in.url, "traffic listener": e2bEnvFile(t, in.dataDir)["E2B_SANDBOX_URL"]} {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
		var n int
		fmt.Sscan(p, &n)
		ports[name] = n
	}
	targets := map[string]string{}
	for _, ip := range append(hostAddrs(t), "127.0.0.1") {
		for name, p := range ports {
			targets[fmt.Sprintf("%s:%d", ip, p)] = name
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/", net.JoinHostPort(ip, fmt.Sprint(hostPort))))
		if err != nil {
			t.Fatalf("the host cannot reach its own server on %s: %v", ip, err)
		}
		resp.Body.Close()
	}
	targets[bAddr+":8080"] = "the other sandbox"
	t.Logf("sandbox %s tries %d addresses: %v", a, len(targets), targets)
	for target, name := range targets {
		host, p, _ := net.SplitHostPort(target)
		var port int
		fmt.Sscan(p, &port)
		if got := in.fetch(a, host, port); got != "" {
			t.Errorf("sandbox %s reached %s at %s: %q", a, name, target, got)
		}
	}
}

// TestSecuritySSHOtherTenant registers a key for tenant acme and one for
// the default tenant: each logs in to its own tenant's sandbox and is
// refused, exactly like an unknown sandbox, at the other's (by ID and by
// name). Then 50 connections send their SSH version line a byte at a
// time: a login still works meanwhile, and the gateway cuts them all
// (after its 30 s handshake timeout).
func TestSecuritySSHOtherTenant(t *testing.T) {
	e := newSSHEnv(t)
	in := e.in
	in.mustDen("ssh-key", "add", "--name", "admin", e.key+".pub")
	in.mustDen("tenant", "create", "acme")
	acme := in.as(strings.TrimSpace(in.mustDen("key", "create", "--tenant", "acme")))
	acme.mustDen("ssh-key", "add", "--name", "acme", e.other+".pub")
	t.Cleanup(acme.removeAll)
	mine := in.create("--timeout", "900", "--name", "minebox")
	theirs := acme.create("--timeout", "900", "--name", "acmebox")

	login := func(key, user string) (string, string, int) {
		return e.run(nil, "ssh", append(e.opts(key), "-p", e.port, user+"@127.0.0.1", "echo in")...)
	}
	for _, tc := range []struct{ key, user string }{{e.key, mine}, {e.key, "minebox"}, {e.other, theirs}, {e.other, "acmebox"}} {
		if out, errOut, code := login(tc.key, tc.user); code != 0 || out != "in\n" {
			t.Errorf("ssh %s@ with its tenant's key: exit %d %q %q", tc.user, code, out, errOut)
		}
	}
	for _, tc := range []struct{ who, key, user string }{
		{"acme's key", e.other, mine}, {"acme's key", e.other, "minebox"},
		{"the default tenant's key", e.key, theirs}, {"the default tenant's key", e.key, "acmebox"},
	} {
		if _, errOut, code := login(tc.key, tc.user); code != 255 || !strings.Contains(errOut, "Permission denied (publickey)") {
			t.Errorf("ssh %s@ with %s: exit %d %q; want the refusal of an unknown sandbox", tc.user, tc.who, code, errOut)
		}
	}

	stop := make(chan struct{})
	defer close(stop)
	slow := slowloris(t, "127.0.0.1:"+e.port, "", "SSH-2.0-"+strings.Repeat("z", 1000), 50, stop)
	if out, errOut, code := login(e.other, theirs); code != 0 || out != "in\n" {
		t.Errorf("ssh during the slow handshakes: exit %d %q %q", code, out, errOut)
	}
	expectCut(t, slow)
}

// multipartZeros is a streamed multipart/form-data body whose "file"
// part, named filename, is n zero bytes; it returns the body and its
// content type.
func multipartZeros(filename string, n int64) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", filename)
		if err == nil {
			_, err = io.Copy(part, io.LimitReader(zeros{}, n))
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, mw.FormDataContentType()
}

// TestSecurityHugeMultipart streams a 128 MiB multipart upload into a
// sandbox with a 64 MiB disk, through den's API and the traffic
// listener: each is a 507 insufficient_storage, no partial file is left,
// and the sandbox goes on running.
func TestSecurityHugeMultipart(t *testing.T) {
	in := startDen(t, "")
	id := in.create("--timeout", "900", "--disk", "64")
	for _, ft := range filesTargets(t, in, id) {
		body, ctype := multipartZeros("/tmp/huge.bin", 128<<20)
		h := map[string]string{"Content-Type": ctype}
		for k, v := range ft.headers {
			h[k] = v
		}
		got := do(t, "POST", ft.base, ft.path, "", body, h)
		if got.status != 507 || got.code() != "insufficient_storage" {
			t.Errorf("%s: 128 MiB multipart into 64 MiB: %d %.300q; want 507 insufficient_storage", ft.name, got.status, got.body)
		}
		if out := in.mustDen("exec", id, "--", "ls", "-a", "/tmp"); strings.Contains(out, "huge") {
			t.Errorf("%s: /tmp after the refused upload:\n%s", ft.name, out)
		}
	}
	if out := in.mustDen("exec", id, "--", "echo", "still-alive"); out != "still-alive\n" {
		t.Errorf("the sandbox after the uploads: %q", out)
	}
}
