package e2b

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/denhq/den/api/rest"
)

// envdHeaders are the headers the SDKs send to envd with E2B_SANDBOX_URL.
func envdHeaders(id, token string) map[string]string {
	h := map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": EnvdPort}
	if token != "" {
		h["X-Access-Token"] = token
	}
	return h
}

func TestTrafficRoutingAndToken(t *testing.T) {
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"templateID":"busybox","envVars":{"E2B_TEST":"yes"}}`)
	id, tok := sb.SandboxID, sb.EnvdAccessToken
	free := freePort(t)
	host := func(h string) map[string]string { return map[string]string{"Host": h, "X-Access-Token": tok} }
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		msg                string // in the error body; "" for a success
	}{
		{"headers", "GET", "/health", envdHeaders(id, tok), 204, ""},
		{"headers envs", "GET", "/envs", envdHeaders(id, tok), 200, ""},
		{"host name", "GET", "/health", host(EnvdPort + "-" + id + ".den.test"), 204, ""},
		{"host name with port", "GET", "/health", host(EnvdPort + "-" + id + ".den.test:8080"), 204, ""},
		{"sandbox host uses headers", "GET", "/health", map[string]string{"Host": "sandbox.den.test", "E2b-Sandbox-Id": id, "E2b-Sandbox-Port": EnvdPort, "X-Access-Token": tok}, 204, ""},
		{"health needs no token", "GET", "/health", envdHeaders(id, ""), 204, ""},
		{"no token", "GET", "/envs", envdHeaders(id, ""), 401, "missing access token"},
		{"no token on an RPC", "POST", "/process.Process/List", envdHeaders(id, ""), 401, "missing access token"},
		{"wrong token", "GET", "/envs", envdHeaders(id, tok+"x"), 401, "invalid access token"},
		{"other sandbox's token", "GET", "/envs", envdHeaders(id, strings.Repeat("0", 48)), 401, "invalid access token"},
		{"unknown sandbox", "GET", "/health", envdHeaders("nope", tok), 502, "The sandbox was not found"},
		{"unknown sandbox by host", "GET", "/health", host(EnvdPort + "-nope.den.test"), 502, "The sandbox was not found"},
		{"user port with nothing on it", "GET", "/", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": strconv.Itoa(free), "X-Access-Token": tok}, 502, "nothing listens on port " + strconv.Itoa(free) + " in the sandbox"},
		{"bad port in header", "GET", "/", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "0", "X-Access-Token": tok}, 400, `invalid E2b-Sandbox-Port "0"`},
		{"missing headers", "GET", "/health", map[string]string{"X-Access-Token": tok}, 400, "missing E2b-Sandbox-Id"},
		{"foreign host", "GET", "/health", host("example.com"), 400, `invalid host "example.com"`},
		{"bad port in host", "GET", "/health", host("abc-" + id + ".den.test"), 400, `port "abc" is not a number from 1 to 65535`},
		{"port out of range in host", "GET", "/health", host("65536-" + id + ".den.test"), 400, `port "65536" is not a number from 1 to 65535`},
		{"init blocked", "POST", "/init", envdHeaders(id, tok), 404, "no route for POST /init"},
		{"init blocked spelled differently", "POST", "/files/../init", envdHeaders(id, tok), 404, "no route for POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, e.traffic+tt.path, "", tt.header)
			if tt.msg == "" {
				if r.status != tt.status {
					t.Fatalf("HTTP %d, want %d: %s", r.status, tt.status, r.body)
				}
				return
			}
			var got struct {
				Code    any    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != tt.status || !strings.Contains(got.Message, tt.msg) {
				t.Errorf("HTTP %d %s, want %d with %q", r.status, r.body, tt.status, tt.msg)
			}
		})
	}
	r := e.do("GET", e.traffic+"/envs", "", envdHeaders(id, tok))
	var envs map[string]string
	decode(t, r.body, &envs)
	if envs["E2B_TEST"] != "yes" {
		t.Errorf("create-time envVars not in the sandbox env: %v", envs)
	}
}

// signedURL builds a /files URL signed as the SDKs sign it.
func signedURL(base, path, op, user, token string, exp int64) string {
	raw := path + ":" + op + ":" + user + ":" + token
	q := url.Values{"path": {path}}
	if user != "" {
		q.Set("username", user)
	}
	if exp != 0 {
		raw += ":" + strconv.FormatInt(exp, 10)
		q.Set("signature_expiration", strconv.FormatInt(exp, 10))
	}
	q.Set("signature", Signature(raw))
	return base + "/files?" + q.Encode()
}

func TestTrafficSignedFileURLs(t *testing.T) {
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"templateID":"busybox"}`)
	id, tok := sb.SandboxID, sb.EnvdAccessToken
	file := t.TempDir() + "/signed.txt"
	routing := envdHeaders(id, "")
	routing["Content-Type"] = "application/octet-stream"
	w := e.do("POST", signedURL(e.traffic, file, "write", "", tok, 0), "hello", routing)
	if w.status != 200 {
		t.Fatalf("signed upload: HTTP %d %s", w.status, w.body)
	}
	r := e.do("GET", signedURL(e.traffic, file, "read", "", tok, e.now.Unix()+60), "", routing)
	if r.status != 200 || string(r.body) != "hello" {
		t.Fatalf("signed download: HTTP %d %q", r.status, r.body)
	}
	tests := []struct {
		name, method, url, msg string
	}{
		{"read signature used to write", "POST", signedURL(e.traffic, file, "read", "", tok, 0), "invalid signature"},
		{"other path", "GET", strings.Replace(signedURL(e.traffic, file, "read", "", tok, 0), "signed.txt", "other.txt", 1), "invalid signature"},
		{"other user", "GET", strings.Replace(signedURL(e.traffic, file, "read", "root", tok, 0), "username=root", "username=nobody", 1), "invalid signature"},
		{"wrong token", "GET", signedURL(e.traffic, file, "read", "", "x"+tok, 0), "invalid signature"},
		{"expired", "GET", signedURL(e.traffic, file, "read", "", tok, e.now.Unix()-1), "signature is expired"},
		{"bad expiration", "GET", e.traffic + "/files?path=a&signature=v1_x&signature_expiration=soon", "invalid signature_expiration"},
		{"signature off /files", "GET", e.traffic + "/envs?signature=v1_x", "missing access token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(tt.method, tt.url, "", routing)
			if got.status != 401 || !strings.Contains(string(got.body), tt.msg) {
				t.Errorf("HTTP %d %s, want 401 with %q", got.status, got.body, tt.msg)
			}
		})
	}
}

// freePort returns a loopback port that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// serveInSandbox starts an HTTP server "in the sandbox": the fake driver's
// guest agent runs on the host, so its loopback is the test's. It answers
// with the request's method, URI, Host and the token headers it got.
func serveInSandbox(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s tokens=%q,%q body=%s cookie=%q", r.Method, r.URL.RequestURI(), r.Host,
			r.Header.Get("X-Access-Token"), r.Header.Get("E2b-Traffic-Access-Token"), body, r.Header.Get("Cookie"))
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestTrafficUserPort: a request for a port other than envd's reaches the
// server listening on it in the sandbox, with the access token in either
// header, which is not forwarded; a paused sandbox is woken for it.
func TestTrafficUserPort(t *testing.T) {
	e := newTestEnv(t)
	sb := e.create(e.keyA, `{"templateID":"busybox"}`)
	id, tok := sb.SandboxID, sb.EnvdAccessToken
	port := strconv.Itoa(serveInSandbox(t))
	name := port + "-" + id + ".den.test:3000"
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		body               string // the answer, or a part of the error message
	}{
		{"host name", "GET", "/a?b=c", map[string]string{"Host": name, "X-Access-Token": tok}, 200,
			fmt.Sprintf(`GET /a?b=c host=%s tokens="","" body=`, name)},
		{"e2b traffic token", "GET", "/", map[string]string{"Host": name, "E2b-Traffic-Access-Token": tok}, 200,
			fmt.Sprintf(`GET / host=%s tokens="","" body=`, name)},
		{"headers", "POST", "/up", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": port, "X-Access-Token": tok}, 200,
			`POST /up host=127.0.0.1:`},
		{"no token", "GET", "/", map[string]string{"Host": name}, 401, "missing access token"},
		{"health needs a token too", "GET", "/health", map[string]string{"Host": name}, 401, "missing access token"},
		{"wrong token", "GET", "/", map[string]string{"Host": name, "X-Access-Token": tok + "x"}, 401, "invalid access token"},
		{"wrong traffic token", "GET", "/", map[string]string{"Host": name, "E2b-Traffic-Access-Token": "x"}, 401, "invalid access token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, e.traffic+tt.path, "", tt.header)
			if r.status != tt.status || !strings.Contains(string(r.body), tt.body) {
				t.Errorf("HTTP %d %s, want %d with %q", r.status, r.body, tt.status, tt.body)
			}
		})
	}
	if r := e.call("POST", "/sandboxes/"+id+"/pause", e.keyA, ""); r.status != http.StatusNoContent {
		t.Fatalf("pause: HTTP %d %s", r.status, r.body)
	}
	if r := e.do("GET", e.traffic+"/", "", map[string]string{"Host": name, "E2b-Traffic-Access-Token": tok}); r.status != http.StatusOK {
		t.Fatalf("user port of a paused sandbox: HTTP %d %s", r.status, r.body)
	}
	if s := e.state(id); s != stateRunning {
		t.Fatalf("state after traffic: %s", s)
	}
}

// TestTrafficPublicAndSignedPorts: a public port needs no token; a
// private one takes a signed URL, whose answer sets a cookie that then
// suffices; signatures bind the sandbox, port and expiry; the server in
// the sandbox sees neither the signature nor den's cookie.
func TestTrafficPublicAndSignedPorts(t *testing.T) {
	e := newTestEnv(t)
	port := serveInSandbox(t)
	ps := strconv.Itoa(port)
	pub := e.create(e.keyA, `{"templateID":"busybox","network":{"allowPublicTraffic":true}}`)
	if r := e.do("GET", e.traffic+"/", "", map[string]string{"Host": ps + "-" + pub.SandboxID + ".den.test"}); r.status != 200 {
		t.Fatalf("public port without a token: HTTP %d %s", r.status, r.body)
	}
	if r := e.do("GET", e.traffic+"/health", "", map[string]string{"Host": "49983-" + pub.SandboxID + ".den.test"}); r.status != http.StatusNoContent {
		t.Fatalf("envd health of a public sandbox: HTTP %d %s", r.status, r.body)
	}
	if r := e.do("GET", e.traffic+"/envs", "", map[string]string{"Host": "49983-" + pub.SandboxID + ".den.test"}); r.status != 401 {
		t.Fatalf("envd of a sandbox with public ports, without a token: HTTP %d %s; want 401 (envd is never public)", r.status, r.body)
	}

	sb := e.create(e.keyA, `{"templateID":"busybox"}`)
	id, tok := sb.SandboxID, sb.EnvdAccessToken
	host := map[string]string{"Host": ps + "-" + id + ".den.test"}
	exp := e.now.Unix() + 60
	signed := func(sig string, exp int64) string {
		return fmt.Sprintf("%s/page?x=1&%s=%s&%s=%d", e.traffic, rest.PortSignatureParam, sig, rest.PortExpiresParam, exp)
	}
	r := e.do("GET", signed(rest.PortSignature(tok, id, port, exp), exp), "", host)
	if r.status != 200 || !strings.HasPrefix(string(r.body), "GET /page?x=1 ") || !strings.Contains(string(r.body), `cookie=""`) {
		t.Fatalf("signed URL: HTTP %d %s", r.status, r.body)
	}
	var cookie string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == rest.PortCookie && c.HttpOnly && c.MaxAge == 60 {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("signed URL set no port cookie: %v", r.header["Set-Cookie"])
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{"Host": host["Host"]}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	if r := e.do("GET", e.traffic+"/next", "", with(map[string]string{"Cookie": cookie + "; app=1"})); r.status != 200 || !strings.Contains(string(r.body), `cookie="app=1"`) {
		t.Fatalf("with the cookie: HTTP %d %s", r.status, r.body)
	}
	for name, tt := range map[string]struct {
		url    string
		header map[string]string
		want   string
	}{
		"no credentials":     {e.traffic + "/", host, "is private"},
		"expired":            {signed(rest.PortSignature(tok, id, port, 10), 10), host, "expired"},
		"another port's":     {signed(rest.PortSignature(tok, id, port+1, exp), exp), host, "invalid port signature"},
		"another sandbox's":  {signed(rest.PortSignature(tok, pub.SandboxID, port, exp), exp), host, "invalid port signature"},
		"a later expiry":     {signed(rest.PortSignature(tok, id, port, exp), exp+3600), host, "invalid port signature"},
		"another token's":    {signed(rest.PortSignature(pub.EnvdAccessToken, id, port, exp), exp), host, "invalid port signature"},
		"cookie on envd":     {e.traffic + "/envs", map[string]string{"Host": "49983-" + id + ".den.test", "Cookie": cookie}, "missing access token"},
		"cookie, other port": {e.traffic + "/", map[string]string{"Host": strconv.Itoa(port+1) + "-" + id + ".den.test", "Cookie": cookie}, "invalid port signature"},
		"bad expiry":         {fmt.Sprintf("%s/?%s=v1_x&%s=soon", e.traffic, rest.PortSignatureParam, rest.PortExpiresParam), host, "want Unix seconds"},
	} {
		if r := e.do("GET", tt.url, "", tt.header); r.status != 401 || !strings.Contains(string(r.body), tt.want) {
			t.Errorf("%s: HTTP %d %s, want 401 with %q", name, r.status, r.body, tt.want)
		}
	}
}
