package e2b

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// Sandbox traffic (E2B_SANDBOX_URL): every request is for one port of one
// sandbox, named by the E2b-Sandbox-Id and E2b-Sandbox-Port headers when
// the Host is localhost, an IP or sandbox.<domain>, else by the host name
// <port>-<sandboxID>.<domain> (E2B's client proxy rules).
//
// A request for envd's port (EnvdPort) must carry the sandbox's access
// token in X-Access-Token, or, for GET and POST /files, a valid URL
// signature. It is forwarded, without the token, to the sandbox's guest
// agent, which honours Connect-Timeout-Ms and Keepalive-Ping-Interval
// itself.
//
// A request for any other port must carry the access token in
// X-Access-Token or E2b-Traffic-Access-Token. It is forwarded, without
// them, to whatever listens on that port on the sandbox's loopback,
// through the guest agent (Service.PortProxy): HTTP/1.1, WebSocket and
// other upgrades, server-sent events, all streaming.
//
// A paused (suspended) sandbox is resumed by the first authorised
// request, which waits for it (concurrent ones share the resume); an
// unauthenticated GET /health of envd does not wake it.

// TrafficService is what the traffic plane needs of den: *server.Server
// implements it.
type TrafficService interface {
	// Sandbox returns a sandbox by ID, whatever its tenant.
	Sandbox(id string) (*store.Sandbox, error)
	// WakeSandbox returns the sandbox running, resuming it first when
	// it is suspended.
	WakeSandbox(ctx context.Context, id string) (*store.Sandbox, error)
	// GuestProxy forwards a request to the sandbox's guest agent.
	GuestProxy(id string) http.Handler
	// PortProxy forwards a request to the server listening on port
	// inside the sandbox; 502 when nothing listens there.
	PortProxy(id string, port int) http.Handler
}

// TrafficConfig wires the sandbox traffic plane.
type TrafficConfig struct {
	Service TrafficService
	// Domain is the suffix of sandbox host names; default "localhost".
	Domain string
	// Now is the clock for signature expiry; nil means time.Now.
	Now func() time.Time
}

type traffic struct{ cfg TrafficConfig }

// NewSandboxTraffic returns the handler of the sandbox traffic listener.
func NewSandboxTraffic(cfg TrafficConfig) http.Handler {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &traffic{cfg: cfg}
}

// trafficError is the JSON body of errors the traffic plane answers
// itself, after E2B's proxy.
type trafficError struct {
	Code      int    `json:"code"`
	Message   string `json:"message"`
	SandboxID string `json:"sandboxId,omitempty"`
}

func writeTrafficError(w http.ResponseWriter, status int, id, msg string) {
	writeJSON(w, status, trafficError{Code: status, Message: msg, SandboxID: id})
}

func (t *traffic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, port, err := t.route(r)
	if err != nil {
		writeTrafficError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	sb, err := t.cfg.Service.Sandbox(id)
	if err != nil || (sb.State != rest.StateRunning && !isPaused(sb.State)) {
		// E2B's proxy answers 502 for a sandbox that is not running; the
		// SDKs map it (and Connect's Unavailable) to their "sandbox not
		// found / timed out" errors.
		writeTrafficError(w, http.StatusBadGateway, id, errNotRunning)
		return
	}
	n, _ := strconv.Atoi(port) // route checked it
	public := false
	if port == EnvdPort {
		err = t.authorize(r, sb)
	} else {
		public, err = t.authorizePort(w, r, sb, n)
	}
	if err != nil {
		writeTrafficError(w, http.StatusUnauthorized, id, err.Error())
		return
	}
	if sb.State != rest.StateRunning {
		if !public && !hasCredentials(r) {
			writeTrafficError(w, http.StatusBadGateway, id, errNotRunning) // an anonymous probe does not wake it
			return
		}
		if _, err := t.cfg.Service.WakeSandbox(r.Context(), sb.ID); err != nil {
			writeTrafficError(w, http.StatusBadGateway, id, "The sandbox is paused and could not be resumed: "+err.Error())
			return
		}
	}
	if port == EnvdPort {
		t.cfg.Service.GuestProxy(sb.ID).ServeHTTP(w, r)
		return
	}
	r.Header.Del("X-Access-Token")
	r.Header.Del(trafficTokenHeader)
	stripPortCredentials(r)
	t.cfg.Service.PortProxy(sb.ID, n).ServeHTTP(w, r)
}

// trafficTokenHeader is the header in which E2B's SDKs send the traffic
// access token of a sandbox's user ports; den takes the sandbox's access
// token there too.
const trafficTokenHeader = "E2b-Traffic-Access-Token"

// authorizePort lets a request reach port of sb when the port is public,
// or it carries the sandbox's access token (X-Access-Token or
// E2b-Traffic-Access-Token), or a valid port signature: in the URL's
// query (then the answer sets the port cookie) or in that cookie.
func (t *traffic) authorizePort(w http.ResponseWriter, r *http.Request, sb *store.Sandbox, port int) (public bool, err error) {
	if sb.PortPublic(port) {
		return true, nil
	}
	tok := r.Header.Get("X-Access-Token")
	if tok == "" {
		tok = r.Header.Get(trafficTokenHeader)
	}
	if tok != "" {
		if !equal(tok, sb.AccessToken) {
			return false, errdefs.New(errdefs.Unauthenticated, "invalid access token")
		}
		return false, nil
	}
	now := t.cfg.Now().Unix()
	q := r.URL.Query()
	if sig := q.Get(rest.PortSignatureParam); sig != "" {
		exp, err := strconv.ParseInt(q.Get(rest.PortExpiresParam), 10, 64)
		if err != nil {
			return false, errdefs.New(errdefs.Unauthenticated, "invalid %s %q: want Unix seconds", rest.PortExpiresParam, q.Get(rest.PortExpiresParam))
		}
		if err := checkPortSignature(sig, exp, now, sb, port); err != nil {
			return false, err
		}
		http.SetCookie(w, &http.Cookie{Name: rest.PortCookie, Value: strconv.FormatInt(exp, 10) + "." + sig, Path: "/",
			MaxAge: int(exp - now), HttpOnly: true, SameSite: http.SameSiteLaxMode})
		return false, nil
	}
	var last error
	for _, c := range r.CookiesNamed(rest.PortCookie) {
		e, sig, _ := strings.Cut(c.Value, ".")
		exp, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			continue
		}
		if last = checkPortSignature(sig, exp, now, sb, port); last == nil {
			return false, nil
		}
	}
	if last != nil {
		return false, last
	}
	return false, errdefs.New(errdefs.Unauthenticated, "missing access token: port %d of sandbox %s is private; send the sandbox's access token in X-Access-Token or %s, open a signed URL (den port --signed), or make the port public (den port --public)", port, sb.ID, trafficTokenHeader)
}

// checkPortSignature verifies a port signature that expires at exp.
func checkPortSignature(sig string, exp, now int64, sb *store.Sandbox, port int) error {
	if now > exp {
		return errdefs.New(errdefs.Unauthenticated, "the signed URL expired: sign a new one (den port --signed)")
	}
	if !equal(sig, rest.PortSignature(sb.AccessToken, sb.ID, port, exp)) {
		return errdefs.New(errdefs.Unauthenticated, "invalid port signature")
	}
	return nil
}

// stripPortCredentials removes the port signature from r's query and the
// port cookie from its headers: the server in the sandbox sees neither.
func stripPortCredentials(r *http.Request) {
	q := r.URL.Query()
	if q.Has(rest.PortSignatureParam) || q.Has(rest.PortExpiresParam) {
		q.Del(rest.PortSignatureParam)
		q.Del(rest.PortExpiresParam)
		r.URL.RawQuery = q.Encode()
	}
	cookies := r.Cookies()
	if len(cookies) == 0 {
		return
	}
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != rest.PortCookie {
			r.AddCookie(c)
		}
	}
}

// hasCredentials reports whether r carries a token or a signature: only
// such a request may wake a paused sandbox.
func hasCredentials(r *http.Request) bool {
	q := r.URL.Query()
	return r.Header.Get("X-Access-Token") != "" || r.Header.Get(trafficTokenHeader) != "" || q.Get("signature") != "" ||
		q.Get(rest.PortSignatureParam) != "" || len(r.CookiesNamed(rest.PortCookie)) > 0
}

// errNotRunning is the message of a sandbox that does not exist or cannot
// run.
const errNotRunning = "The sandbox was not found: it does not exist or is not running"

// route returns the sandbox ID and port a request is for.
func (t *traffic) route(r *http.Request) (id, port string, err error) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || net.ParseIP(host) != nil || host == "sandbox."+t.cfg.Domain {
		id, port = r.Header.Get("E2b-Sandbox-Id"), r.Header.Get("E2b-Sandbox-Port")
		if id == "" || port == "" {
			return "", "", errdefs.New(errdefs.InvalidArgument, "missing E2b-Sandbox-Id or E2b-Sandbox-Port header")
		}
		p, ok := canonicalPort(port)
		if !ok {
			return "", "", errdefs.New(errdefs.InvalidArgument, "invalid E2b-Sandbox-Port %q: want a number from 1 to 65535", port)
		}
		return id, p, nil
	}
	label, ok := strings.CutSuffix(host, "."+t.cfg.Domain)
	if ok {
		port, id, ok = strings.Cut(label, "-")
	}
	if !ok || strings.Contains(id, ".") || id == "" {
		return "", "", errdefs.New(errdefs.InvalidArgument, "invalid host %q: want <port>-<sandboxID>.%s", r.Host, t.cfg.Domain)
	}
	p, ok := canonicalPort(port)
	if !ok {
		return "", "", errdefs.New(errdefs.InvalidArgument, "invalid host %q: port %q is not a number from 1 to 65535", r.Host, port)
	}
	return id, p, nil
}

// canonicalPort returns the decimal port number p, 1 to 65535, without
// leading zeros: "049983" is envd's port too, and must route as envd.
func canonicalPort(p string) (string, bool) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}

// authorize accepts the sandbox's access token in X-Access-Token, or a
// valid signature on GET (read) and POST (write) /files. GET /health needs
// neither.
func (t *traffic) authorize(r *http.Request, sb *store.Sandbox) error {
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		return nil // as envd: the SDKs' isRunning probes it; it reveals only liveness
	}
	if tok := r.Header.Get("X-Access-Token"); tok != "" {
		if !equal(tok, sb.AccessToken) {
			return errdefs.New(errdefs.Unauthenticated, "invalid access token")
		}
		return nil
	}
	q := r.URL.Query()
	if q.Get("signature") == "" || r.URL.Path != "/files" {
		return errdefs.New(errdefs.Unauthenticated, "missing access token: send the sandbox's envdAccessToken in X-Access-Token")
	}
	op := map[string]string{http.MethodGet: "read", http.MethodPost: "write"}[r.Method]
	if op == "" {
		return errdefs.New(errdefs.Unauthenticated, "a signature authorises only GET and POST /files")
	}
	return t.checkSignature(q.Get("signature"), q.Get("signature_expiration"), q.Get("path"), op, q.Get("username"), sb.AccessToken)
}

// checkSignature verifies an SDK file URL signature:
// "v1_" + unpadded base64(sha256("path:op:user:token[:expiration]")).
func (t *traffic) checkSignature(sig, exp, path, op, user, token string) error {
	raw := path + ":" + op + ":" + user + ":" + token
	if exp != "" {
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return errdefs.New(errdefs.Unauthenticated, "invalid signature_expiration %q", exp)
		}
		if t.cfg.Now().Unix() > n {
			return errdefs.New(errdefs.Unauthenticated, "signature is expired")
		}
		raw += ":" + exp
	}
	if !equal(sig, Signature(raw)) {
		return errdefs.New(errdefs.Unauthenticated, "invalid signature")
	}
	return nil
}

// Signature is the v1 signature of a raw "path:op:user:token[:exp]" string.
func Signature(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func equal(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
