package guest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/denhq/den/internal/envlist"
	"github.com/denhq/den/internal/errdefs"
)

// maxInitBody bounds the body of POST /init.
const maxInitBody = 1 << 20

// hostNameMax is the kernel's HOST_NAME_MAX.
const hostNameMax = 64

// initRequest is the body of POST /init: what the runtime driver applies
// when it hands a pre-started sandbox to its user.
type initRequest struct {
	// Env is merged into the base environment of every later process.
	Env map[string]string `json:"env"`
	// Hostname, when not empty, becomes the sandbox's hostname.
	Hostname string `json:"hostname"`
	// DefaultUser, when not empty, becomes the user of requests that name
	// none; the sandbox must have it.
	DefaultUser string `json:"defaultUser"`
}

// serveInit answers POST /init, an internal route of the runtime driver
// (the control plane's proxy never forwards it): it sets the hostname and
// merges env into the base environment, then answers 204.
func (a *Agent) serveInit(w http.ResponseWriter, r *http.Request) {
	var req initRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxInitBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeHTTPError(w, errdefs.Wrap(errdefs.InvalidArgument, err, "init: invalid JSON body"))
		return
	}
	if err := a.init(req); err != nil {
		writeHTTPError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// init validates req, then applies it: hostname first, so that a failure
// leaves the environment and default user unchanged.
func (a *Agent) init(req initRequest) error {
	if err := checkInit(req); err != nil {
		return err
	}
	if req.DefaultUser != "" {
		if _, err := a.users.lookup(req.DefaultUser); err != nil {
			return fmt.Errorf("init: default user: %w", err)
		}
	}
	if req.Hostname != "" {
		if err := a.sethostname(req.Hostname); err != nil {
			return fmt.Errorf("init: set hostname: %w", err)
		}
	}
	a.envMu.Lock()
	a.cfg.Env = envlist.Merge(a.cfg.Env, req.Env)
	if req.DefaultUser != "" {
		a.cfg.DefaultUser = req.DefaultUser
	}
	a.envMu.Unlock()
	a.log.Debug("sandbox initialised", "env_vars", len(req.Env), "hostname", req.Hostname != "", "default_user", req.DefaultUser)
	return nil
}

// checkInit validates an init request. All errors are InvalidArgument.
func checkInit(req initRequest) error {
	if len(req.Hostname) > hostNameMax || strings.ContainsRune(req.Hostname, 0) {
		return errdefs.New(errdefs.InvalidArgument, "init: hostname must be at most %d bytes without NUL", hostNameMax)
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return errdefs.New(errdefs.InvalidArgument, "init: env name %q is invalid: want a non-empty name without '=' or NUL, and a value without NUL", k)
		}
	}
	return nil
}

// defaultUser is the user of requests that name none.
func (a *Agent) defaultUser() string {
	a.envMu.RLock()
	defer a.envMu.RUnlock()
	return a.cfg.DefaultUser
}

// baseEnv is a snapshot of the base environment of new processes.
func (a *Agent) baseEnv() []string {
	a.envMu.RLock()
	defer a.envMu.RUnlock()
	return a.cfg.Env
}
