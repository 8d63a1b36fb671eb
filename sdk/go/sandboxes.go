package den

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem/filesystemconnect"
	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/api/rest"
)

// Sandbox is a handle on one sandbox: the sandbox as the API last showed it
// plus the operations that run inside it (processes, files), which go
// through the server's proxy to the sandbox's guest agent. A Sandbox is
// safe for concurrent use; its rest.Sandbox fields are a snapshot: call
// Client.Get for a fresh one.
type Sandbox struct {
	rest.Sandbox

	c     *Client
	user  string
	guest *guestClients
}

// guestClients are a handle's clients of the guest protocol, built at
// first use: most handles run commands and never touch files, and each
// client costs tens of microseconds and kilobytes to build.
type guestClients struct {
	doer                        *guestDoer
	url                         string
	startOnce, procOnce, fsOnce sync.Once
	start                       *connect.Client[process.StartRequest, process.StartResponse]
	proc                        processconnect.ProcessClient
	fs                          filesystemconnect.FilesystemClient
}

// startProc is the handle's client of process.Start alone: starting a
// command is the commonest guest call, and a client of the one procedure
// costs an eighth of one of the whole service.
func (s *Sandbox) startProc() *connect.Client[process.StartRequest, process.StartResponse] {
	g := s.guest
	g.startOnce.Do(func() {
		g.start = connect.NewClient[process.StartRequest, process.StartResponse](g.doer, g.url+processconnect.ProcessStartProcedure,
			connect.WithSchema(process.File_process_process_proto.Services().ByName("Process").Methods().ByName("Start")),
			connect.WithReadMaxBytes(MaxGuestMessage))
	})
	return g.start
}

// proc is the process client of the handle.
func (s *Sandbox) proc() processconnect.ProcessClient {
	g := s.guest
	g.procOnce.Do(func() {
		g.proc = processconnect.NewProcessClient(g.doer, g.url, connect.WithReadMaxBytes(MaxGuestMessage))
	})
	return g.proc
}

// fs is the filesystem client of the handle.
func (s *Sandbox) fs() filesystemconnect.FilesystemClient {
	g := s.guest
	g.fsOnce.Do(func() {
		g.fs = filesystemconnect.NewFilesystemClient(g.doer, g.url, connect.WithReadMaxBytes(MaxGuestMessage))
	})
	return g.fs
}

// Sandbox returns a handle on the sandbox with the given ID without asking
// the server; only ID is set among the rest.Sandbox fields.
func (c *Client) Sandbox(id string) *Sandbox {
	return c.handle(rest.Sandbox{ID: id}, "")
}

func (c *Client) handle(s rest.Sandbox, user string) *Sandbox {
	sb := &Sandbox{Sandbox: s, c: c, user: user}
	sb.guest = &guestClients{doer: &guestDoer{hc: c.hc, apiKey: c.apiKey, user: user}, url: sb.guestURL()}
	return sb
}

// MaxGuestMessage bounds one message from a sandbox's guest agent (a
// chunk of output, a directory listing): what a sandbox sends is
// untrusted, and a larger message is an error instead of memory.
const MaxGuestMessage = 64 << 20

// AsUser returns a handle that runs processes and file operations as the
// given user of the sandbox ("" means the guest's default user). The
// receiver is unchanged.
func (s *Sandbox) AsUser(user string) *Sandbox { return s.c.handle(s.Sandbox, user) }

// User returns the user this handle acts as ("" = the guest's default).
func (s *Sandbox) User() string { return s.user }

// guestURL is the base URL of the sandbox's guest protocol on the server.
func (s *Sandbox) guestURL() string {
	return s.c.endpoint("/v1/sandboxes/"+url.PathEscape(s.ID)+rest.GuestPathPrefix, nil)
}

func sandboxPath(id string) string { return "/v1/sandboxes/" + url.PathEscape(id) }

// Create creates a sandbox and returns it once the server answers (the
// server decides whether that is before or after it is running; check
// State). Zero fields of req take the server's defaults.
func (c *Client) Create(ctx context.Context, req rest.CreateSandboxRequest) (*Sandbox, error) {
	var s rest.Sandbox
	if err := c.doJSON(ctx, http.MethodPost, "/v1/sandboxes", nil, req, &s); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	return c.handle(s, ""), nil
}

// Get returns the sandbox with the given ID or name.
func (c *Client) Get(ctx context.Context, idOrName string) (*Sandbox, error) {
	var s rest.Sandbox
	if err := c.doJSON(ctx, http.MethodGet, sandboxPath(idOrName), nil, nil, &s); err != nil {
		return nil, fmt.Errorf("get sandbox %s: %w", idOrName, err)
	}
	return c.handle(s, ""), nil
}

// ListOptions filter and page a sandbox listing. Zero fields do not filter.
type ListOptions struct {
	// State keeps only sandboxes in this state (rest.StateRunning, ...).
	State string
	// Metadata keeps only sandboxes whose metadata has all these pairs.
	Metadata map[string]string
	// Limit is the page size; 0 means the server's default.
	Limit int
	// PageToken continues a listing from a previous page's NextPageToken.
	PageToken string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.State != "" {
		q.Set("state", o.State)
	}
	keys := make([]string, 0, len(o.Metadata))
	for k := range o.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("metadata", k+"="+o.Metadata[k])
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.PageToken != "" {
		q.Set("page_token", o.PageToken)
	}
	return q
}

// List returns one page of sandboxes.
func (c *Client) List(ctx context.Context, opts ListOptions) (*rest.SandboxList, error) {
	var l rest.SandboxList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/sandboxes", opts.query(), nil, &l); err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return &l, nil
}

// All iterates over every sandbox matching opts, fetching pages as needed,
// starting at opts.PageToken. A failed page yields the error once and ends
// the iteration.
func (c *Client) All(ctx context.Context, opts ListOptions) iter.Seq2[rest.Sandbox, error] {
	return func(yield func(rest.Sandbox, error) bool) {
		for {
			page, err := c.List(ctx, opts)
			if err != nil {
				yield(rest.Sandbox{}, err)
				return
			}
			for _, s := range page.Sandboxes {
				if !yield(s, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			opts.PageToken = page.NextPageToken
		}
	}
}

// Delete deletes the sandbox with the given ID or name.
func (c *Client) Delete(ctx context.Context, id string) error {
	if err := c.doJSON(ctx, http.MethodDelete, sandboxPath(id), nil, nil, nil); err != nil {
		return fmt.Errorf("delete sandbox %s: %w", id, err)
	}
	return nil
}

// Delete deletes this sandbox.
func (s *Sandbox) Delete(ctx context.Context) error { return s.c.Delete(ctx, s.ID) }

// SetTimeout sets the sandbox's timeout to seconds from now (0 removes it)
// and returns the updated sandbox.
func (c *Client) SetTimeout(ctx context.Context, id string, seconds int64) (*Sandbox, error) {
	var s rest.Sandbox
	in := rest.SetTimeoutRequest{Timeout: seconds}
	if err := c.doJSON(ctx, http.MethodPost, sandboxPath(id)+"/timeout", nil, in, &s); err != nil {
		return nil, fmt.Errorf("set timeout of sandbox %s: %w", id, err)
	}
	return c.handle(s, ""), nil
}

// Network returns the egress policy of the sandbox with the given ID or
// name.
func (c *Client) Network(ctx context.Context, id string) (*rest.NetworkPolicy, error) {
	var p rest.NetworkPolicy
	if err := c.doJSON(ctx, http.MethodGet, sandboxPath(id)+"/network", nil, nil, &p); err != nil {
		return nil, fmt.Errorf("get network policy of sandbox %s: %w", id, err)
	}
	return &p, nil
}

// SetNetwork replaces the egress policy of the sandbox with the given ID
// or name; it applies at once. The server answers 400 naming a bad rule.
func (c *Client) SetNetwork(ctx context.Context, id string, p rest.NetworkPolicy) (*rest.NetworkPolicy, error) {
	var out rest.NetworkPolicy
	if err := c.doJSON(ctx, http.MethodPut, sandboxPath(id)+"/network", nil, p, &out); err != nil {
		return nil, fmt.Errorf("set network policy of sandbox %s: %w", id, err)
	}
	return &out, nil
}

// Suspend saves the state of the running sandbox with the given ID or name
// (memory, processes, files) and stops it, and returns it suspended. Its
// timers stop until it resumes. The server answers 409 (IsConflict) when
// it is not running and 501 when its runtime cannot suspend.
func (c *Client) Suspend(ctx context.Context, id string) (*Sandbox, error) {
	var s rest.Sandbox
	if err := c.doJSON(ctx, http.MethodPost, sandboxPath(id)+"/suspend", nil, nil, &s); err != nil {
		return nil, fmt.Errorf("suspend sandbox %s: %w", id, err)
	}
	return c.handle(s, ""), nil
}

// Resume brings the suspended sandbox with the given ID or name back and
// returns it running, with the life it had left. Any exec or file call
// resumes a suspended sandbox too, so Resume is needed only to resume it
// ahead of use. 409 when it is not suspended.
func (c *Client) Resume(ctx context.Context, id string) (*Sandbox, error) {
	var s rest.Sandbox
	if err := c.doJSON(ctx, http.MethodPost, sandboxPath(id)+"/resume", nil, nil, &s); err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", id, err)
	}
	return c.handle(s, ""), nil
}

// Suspend suspends this sandbox (see Client.Suspend) and returns a fresh
// handle on it, acting as the same user.
func (s *Sandbox) Suspend(ctx context.Context) (*Sandbox, error) {
	sb, err := s.c.Suspend(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	return sb.AsUser(s.user), nil
}

// Resume resumes this sandbox (see Client.Resume) and returns a fresh
// handle on it, acting as the same user.
func (s *Sandbox) Resume(ctx context.Context) (*Sandbox, error) {
	sb, err := s.c.Resume(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	return sb.AsUser(s.user), nil
}

// SetPortPublic makes port of sandbox idOrName public (its URL needs no
// token) or private again; port 0 is every port.
func (c *Client) SetPortPublic(ctx context.Context, idOrName string, port int, public bool) (*rest.Sandbox, error) {
	var sb rest.Sandbox
	path := "/v1/sandboxes/" + url.PathEscape(idOrName) + "/ports/" + strconv.Itoa(port)
	if err := c.doJSON(ctx, http.MethodPut, path, nil, rest.PortAccessRequest{Public: public}, &sb); err != nil {
		return nil, fmt.Errorf("set port %d of sandbox %s: %w", port, idOrName, err)
	}
	return &sb, nil
}
