package e2b

import (
	"cmp"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/server"
	"github.com/denhq/den/internal/store"
)

// defaultTimeout applies when a create omits timeout (npm e2b 2.51 does
// when the caller sets none); it is the SDKs' own default.
const defaultTimeout = 300

// defaultUser is the user E2B sandboxes run as, when the image has it.
const defaultUser = "user"

// Bounds of list pages, as E2B's spec sets them.
const (
	defaultListLimit = 100
	maxListLimit     = 100
)

// maxRefreshSeconds bounds POST /sandboxes/{id}/refreshes.
const maxRefreshSeconds = 3600

func invalid(format string, args ...any) error {
	return errdefs.New(errdefs.InvalidArgument, format, args...)
}

func (a *api) create(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var req newSandbox
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	creq, err := a.createRequest(p, req)
	if err != nil {
		return err
	}
	sb, err := a.cfg.Service.CreateSandbox(r.Context(), p, creq)
	if errdefs.IsNotFound(err) {
		return errdefs.Wrap(errdefs.NotFound, err, "template '%s' not found", req.TemplateID)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, a.toSandbox(sb))
	return nil
}

// createRequest translates an E2B create into den's: the template is one of
// p's templates (its den image, resources and user) or an image name,
// envVars become the sandbox env, and the default user is the template's,
// else `user` when the image has one.
func (a *api) createRequest(p server.Principal, req newSandbox) (rest.CreateSandboxRequest, error) {
	switch {
	case req.TemplateID == "":
		return rest.CreateSandboxRequest{}, invalid("templateID is required")
	case req.Timeout != nil && *req.Timeout < 0:
		return rest.CreateSandboxRequest{}, invalid("timeout must be at least 0 seconds, got %d", *req.Timeout)
	}
	tpl, err := a.resolveTemplate(p, req.TemplateID)
	if err != nil {
		return rest.CreateSandboxRequest{}, err
	}
	timeout := int64(defaultTimeout)
	if req.Timeout != nil {
		timeout = min(*req.Timeout, rest.MaxTimeoutSeconds)
	}
	creq := rest.CreateSandboxRequest{
		Image: tpl.Image, Env: req.EnvVars, Metadata: req.Metadata, Timeout: &timeout,
		CPUs: float64(tpl.CPUCount), MemoryMB: int64(tpl.MemoryMB),
	}
	if req.AutoPause {
		creq.TimeoutAction = rest.ActionSuspend // paused, not killed, when the timeout passes
	}
	creq.Network = networkOf(req)
	if req.Network != nil && req.Network.AllowPublicTraffic != nil && *req.Network.AllowPublicTraffic {
		creq.PublicPorts = []int{0}
	}
	user := cmp.Or(tpl.User, defaultUser)
	if a.cfg.Service.ImageHasUser(tpl.Image, user) {
		creq.User = user
	}
	return creq, nil
}

// lookup finds a sandbox of p's tenant that E2B would show: running or
// paused (suspended, or on its way in or out). Starting, failed and
// stopping sandboxes are NotFound. The call counts as activity on the
// sandbox (idle timeouts); peek is lookup for calls that only read it.
func (a *api) lookup(p server.Principal, id string) (*store.Sandbox, error) {
	sb, err := a.cfg.Service.Lookup(p, id)
	return shown(id, sb, err)
}

func (a *api) peek(p server.Principal, id string) (*store.Sandbox, error) {
	sb, err := a.cfg.Service.Inspect(p, id)
	return shown(id, sb, err)
}

// shown passes on a sandbox E2B shows and turns the others into NotFound.
func shown(id string, sb *store.Sandbox, err error) (*store.Sandbox, error) {
	if err != nil {
		return nil, errdefs.Wrap(errdefs.NotFound, err, "sandbox \"%s\" doesn't exist or you don't have access to it", id)
	}
	if sb.State == rest.StateRunning || isPaused(sb.State) {
		return sb, nil
	}
	return nil, errdefs.New(errdefs.NotFound, "sandbox \"%s\" is %s", id, sb.State)
}

// isPaused reports whether den state s is E2B's paused.
func isPaused(s string) bool {
	return s == rest.StateSuspended || s == rest.StateSuspending || s == rest.StateResuming
}

// connect answers POST /sandboxes/{id}/connect and its v2: 200 with the
// sandbox when it runs, 201 when it was paused and connect resumed it. A
// timeout only extends the expiry.
func (a *api) connect(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var req timeoutBody
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	if req.Timeout != nil && *req.Timeout < 0 {
		return invalid("timeout must be at least 0 seconds, got %d", *req.Timeout)
	}
	sb, err := a.lookup(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	sb, resumed, err := a.cfg.Service.EnsureRunning(r.Context(), p, sb.ID)
	if err != nil {
		return err
	}
	if req.Timeout != nil {
		if sb, err = a.extend(r, p, sb, *req.Timeout); err != nil {
			return err
		}
	}
	status := http.StatusOK
	if resumed {
		status = http.StatusCreated
	}
	writeJSON(w, status, a.toSandbox(sb))
	return nil
}

// extend moves a sandbox's expiry to seconds from now when that is later
// than its current one, as E2B's connect and refresh do.
func (a *api) extend(r *http.Request, p server.Principal, sb *store.Sandbox, seconds int64) (*store.Sandbox, error) {
	seconds = min(seconds, rest.MaxTimeoutSeconds)
	until := a.cfg.Now().Add(time.Duration(seconds) * time.Second)
	if sb.ExpiresAt.IsZero() || !until.After(sb.ExpiresAt) {
		return sb, nil
	}
	return a.cfg.Service.SetTimeout(r.Context(), p, sb.ID, seconds)
}

func (a *api) get(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	sb, err := a.peek(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.toDetail(sb))
	return nil
}

// kill answers DELETE /sandboxes/{id}: 204 once it is removed, 404 for
// an unknown one and for one already on its way out (its timeout or
// another kill is removing it: connect and getInfo answer 404 for it
// already, and E2B's kill reports it as not found). Starting and failed
// sandboxes, which E2B does not show, can still be killed.
func (a *api) kill(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	sb, err := a.cfg.Service.Lookup(p, r.PathValue("id"))
	if err != nil {
		return errdefs.Wrap(errdefs.NotFound, err, "sandbox \"%s\" doesn't exist or you don't have access to it", r.PathValue("id"))
	}
	if sb.State == rest.StateStopping || sb.State == rest.StateTerminated {
		return errdefs.New(errdefs.NotFound, "sandbox \"%s\" is %s", sb.ID, sb.State)
	}
	if err := a.cfg.Service.DeleteSandbox(r.Context(), p, sb.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) setTimeout(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var req timeoutBody
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Timeout == nil || *req.Timeout < 0 {
		return invalid("timeout is required and must be at least 0 seconds")
	}
	sb, err := a.lookup(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if _, err := a.cfg.Service.SetTimeout(r.Context(), p, sb.ID, min(*req.Timeout, rest.MaxTimeoutSeconds)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) refresh(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var req refreshBody
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	seconds := int64(defaultTimeout)
	if req.Duration != nil {
		seconds = *req.Duration
	}
	if seconds < 0 || seconds > maxRefreshSeconds {
		return invalid("duration must be between 0 and %d seconds, got %d", maxRefreshSeconds, seconds)
	}
	sb, err := a.lookup(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if _, err := a.extend(r, p, sb, seconds); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pause answers POST /sandboxes/{id}/pause: 204 once the sandbox is
// suspended, 409 when it is paused already, 404 for an unknown one, 501
// when the runtime cannot suspend.
func (a *api) pause(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	sb, err := a.lookup(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if isPaused(sb.State) {
		return errdefs.New(errdefs.Conflict, "sandbox \"%s\" is already paused", sb.ID)
	}
	if _, err := a.cfg.Service.SuspendSandbox(r.Context(), p, sb.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resume answers the deprecated POST /sandboxes/{id}/resume: 201 with the
// sandbox once it runs again, 409 when it is not paused. A timeout only
// extends the expiry, as connect's; autoPause is ignored (the sandbox
// keeps the timeout action it was created with).
func (a *api) resume(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	var req timeoutBody
	if err := decodeJSON(r, &req, true); err != nil {
		return err
	}
	if req.Timeout != nil && *req.Timeout < 0 {
		return invalid("timeout must be at least 0 seconds, got %d", *req.Timeout)
	}
	sb, err := a.lookup(p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !isPaused(sb.State) {
		return errdefs.New(errdefs.Conflict, "sandbox \"%s\" is already running", sb.ID)
	}
	if sb, _, err = a.cfg.Service.EnsureRunning(r.Context(), p, sb.ID); err != nil {
		return err
	}
	if req.Timeout != nil {
		if sb, err = a.extend(r, p, sb, *req.Timeout); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, a.toSandbox(sb))
	return nil
}

// listV1 answers GET /sandboxes: every running sandbox matching the
// metadata filter, unpaginated.
func (a *api) listV1(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	f, err := listFilter(r.URL.Query(), false)
	if err != nil {
		return err
	}
	out := []sandboxDetail{}
	for {
		page, next, err := a.cfg.Service.ListSandboxes(p, f)
		if err != nil {
			return err
		}
		for _, sb := range page {
			out = append(out, a.toDetail(sb))
		}
		if next == "" {
			break
		}
		f.PageToken = next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listV2 answers GET /v2/sandboxes: one page, the next page's token in
// the x-next-token header.
func (a *api) listV2(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	f, err := listFilter(r.URL.Query(), true)
	if err != nil {
		return err
	}
	page, next, err := a.cfg.Service.ListSandboxes(p, f)
	if err != nil {
		return errdefs.Wrap(errdefs.KindOf(err), err, "list sandboxes")
	}
	out := make([]sandboxDetail, 0, len(page))
	for _, sb := range page {
		out = append(out, a.toDetail(sb))
	}
	if next != "" {
		w.Header().Set("X-Next-Token", next)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listFilter parses E2B's list query: metadata is one parameter holding a
// URL-encoded query string (k=v&k2=v2); state is comma-separated or
// repeated (running, paused; default both; paused includes sandboxes
// being suspended or resumed); limit and nextToken paginate.
func listFilter(q url.Values, v2 bool) (store.SandboxFilter, error) {
	f := store.SandboxFilter{Limit: defaultListLimit, States: []string{rest.StateRunning}}
	if v2 {
		f.States = append(denStates(stateRunning), denStates(statePaused)...)
		states, err := parseStates(q["state"])
		if err != nil {
			return f, err
		}
		if states != nil {
			f.States = states
		}
		if err := parseLimit(q, &f); err != nil {
			return f, err
		}
		f.PageToken = q.Get("nextToken")
	}
	if m := q.Get("metadata"); m != "" {
		md, err := url.ParseQuery(m)
		if err != nil {
			return f, invalid("invalid metadata filter %q: use URL-encoded key=value pairs joined by &", m)
		}
		f.Metadata = map[string]string{}
		for k, vs := range md {
			f.Metadata[k] = vs[len(vs)-1]
		}
	}
	return f, nil
}

func parseStates(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if s != stateRunning && s != statePaused {
				return nil, invalid("invalid state %q: use running or paused", s)
			}
			out = append(out, denStates(s)...)
		}
	}
	return out, nil
}

func parseLimit(q url.Values, f *store.SandboxFilter) error {
	l := q.Get("limit")
	if l == "" {
		return nil
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > maxListLimit {
		return invalid("limit must be between 1 and %d, got %q", maxListLimit, l)
	}
	f.Limit = n
	return nil
}

// networkOf is the egress policy of an E2B create: allow_internet_access
// (default true) and network's lists, where denying ALL_TRAFFIC is the
// internet off.
func networkOf(req newSandbox) *rest.NetworkPolicy {
	on := req.AllowInternetAccess == nil || *req.AllowInternetAccess
	p := &rest.NetworkPolicy{}
	if req.Network != nil {
		p.Allow = req.Network.AllowOut
		for _, r := range req.Network.DenyOut {
			if r == allTraffic {
				on = false
				continue
			}
			p.Deny = append(p.Deny, r)
		}
	}
	p.Internet = &on
	return p
}
