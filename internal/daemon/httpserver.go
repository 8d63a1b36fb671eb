package daemon

import (
	"net/http"
	"time"
)

// httpLimits bound what one client can hold of den's HTTP listeners (the
// API and the sandbox traffic listener) before its request has begun.
// There is deliberately no ReadTimeout or WriteTimeout: exec output,
// file transfers, WebSockets and server-sent events through a sandbox's
// port stream for as long as they need, and their handlers bound them.
type httpLimits struct {
	// ReadHeader is how long a connection may take to send a request's
	// headers; a slowloris client is cut after it.
	ReadHeader time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request.
	Idle time.Duration
	// MaxHeaderBytes bounds the request line and headers; more is a 431.
	MaxHeaderBytes int
}

// defaultHTTPLimits are the limits of den up's listeners.
var defaultHTTPLimits = httpLimits{ReadHeader: 10 * time.Second, Idle: 30 * time.Second, MaxHeaderBytes: 1 << 20}

// newHTTPServer returns a server of h with the limits l. It speaks
// HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c: gRPC clients,
// `curl --http2-prior-knowledge`); TLS, where wanted, is a front proxy's.
func newHTTPServer(h http.Handler, l httpLimits) *http.Server {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		Protocols:         p,
	}
}
