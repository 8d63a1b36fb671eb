package den

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/denhq/den/api/rest"
)

// Options configure a Client. The zero value of a field means "not set".
type Options struct {
	// URL is the base URL of the den server, e.g. "http://127.0.0.1:8080".
	URL string
	// APIKey is sent as the X-API-Key header of every request.
	APIKey string
	// HTTPClient carries the requests; nil means a client without timeout
	// (streams such as Exec and ReadFile may last long) that keeps up to
	// MaxIdleConns idle connections to the server, so that many calls at
	// once reuse their connections. Timeouts belong in the contexts passed
	// to each call.
	HTTPClient *http.Client
}

// Option configures a Client. Options is itself an Option that sets every
// non-zero field, so NewClient(opts) and NewClient(WithURL(u)) both work.
type Option interface {
	apply(*Options)
}

func (o Options) apply(dst *Options) {
	if o.URL != "" {
		dst.URL = o.URL
	}
	if o.APIKey != "" {
		dst.APIKey = o.APIKey
	}
	if o.HTTPClient != nil {
		dst.HTTPClient = o.HTTPClient
	}
}

type optionFunc func(*Options)

func (f optionFunc) apply(o *Options) { f(o) }

// WithURL sets the server's base URL.
func WithURL(u string) Option { return optionFunc(func(o *Options) { o.URL = u }) }

// WithAPIKey sets the API key.
func WithAPIKey(key string) Option { return optionFunc(func(o *Options) { o.APIKey = key }) }

// WithHTTPClient sets the HTTP client that carries the requests.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *Options) { o.HTTPClient = c })
}

// MaxIdleConns is how many idle connections to its server a Client made
// without Options.HTTPClient keeps. Go's default transport keeps two per
// host: a program with a hundred sandbox calls in flight then dials a new
// connection for almost every call, which costs it and the server more
// than the call.
const MaxIdleConns = 512

// defaultTransport is the transport of Clients made without
// Options.HTTPClient, shared as http.DefaultTransport is.
var defaultTransport = func() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = MaxIdleConns, MaxIdleConns
	return tr
}()

// Client is a client of one den server. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	apiKey string
	hc     *http.Client
}

// NewClient returns a client configured by opts, applied in order. The URL
// is required; use FromEnv to find the local server's URL and key.
func NewClient(opts ...Option) (*Client, error) {
	var o Options
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.URL == "" {
		return nil, ErrNotConfigured
	}
	u, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("den: invalid server URL %q: want http(s)://host[:port]", o.URL)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: defaultTransport}
	}
	return &Client{base: u, apiKey: o.APIKey, hc: hc}, nil
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// endpoint returns the absolute URL of an API path (which starts with "/"
// and is escaped: an image name's slashes are %2F within one segment).
func (c *Client) endpoint(path string, query url.Values) string {
	u := *c.base
	raw := strings.TrimRight(u.EscapedPath(), "/") + path
	if p, err := url.PathUnescape(raw); err == nil {
		u.Path, u.RawPath = p, raw
	} else {
		u.Path, u.RawPath = raw, ""
	}
	u.RawQuery = query.Encode()
	return u.String()
}

// newRequest builds a request to the API with the key set.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), body)
	if err != nil {
		return nil, err
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	}
	return req, nil
}

// doJSON sends in (nil for no body) as JSON and decodes a 2xx answer into
// out (nil to discard it). Non-2xx answers become *APIError.
func (c *Client) doJSON(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

// send performs req and decodes a 2xx JSON answer into out.
func (c *Client) send(req *http.Request, out any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return contextErr(req.Context(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errorFromResponse(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", contextErr(req.Context(), err))
	}
	return nil
}

// contextErr prefers the context's error over the transport's wrapping of
// it, so callers can test errors.Is(err, context.Canceled).
func contextErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}

// ListNodes lists the nodes that run sandboxes.
func (c *Client) ListNodes(ctx context.Context) ([]rest.Node, error) {
	var list rest.NodeList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/nodes", nil, nil, &list); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return list.Nodes, nil
}

// GetNode describes node id.
func (c *Client) GetNode(ctx context.Context, id string) (*rest.Node, error) {
	var n rest.Node
	if err := c.doJSON(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, nil, &n); err != nil {
		return nil, fmt.Errorf("get node %s: %w", id, err)
	}
	return &n, nil
}

// Info describes the server: version, runtimes and node.
func (c *Client) Info(ctx context.Context) (*rest.Info, error) {
	var info rest.Info
	if err := c.doJSON(ctx, http.MethodGet, "/v1/info", nil, nil, &info); err != nil {
		return nil, fmt.Errorf("get server info: %w", err)
	}
	return &info, nil
}
