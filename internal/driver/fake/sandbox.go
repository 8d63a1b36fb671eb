package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	osuser "os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/pipelisten"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/guest"
)

// registry holds the running sandboxes of every fake Driver, by directory.
var registry = struct {
	sync.Mutex
	m map[string]*sandbox
}{m: map[string]*sandbox{}}

func lookup(dir string) *sandbox {
	registry.Lock()
	defer registry.Unlock()
	return registry.m[dir]
}

func register(dir string, sb *sandbox) {
	registry.Lock()
	defer registry.Unlock()
	registry.m[dir] = sb
}

func unregister(dir string) *sandbox {
	registry.Lock()
	defer registry.Unlock()
	sb := registry.m[dir]
	delete(registry.m, dir)
	return sb
}

// sandbox is a running fake sandbox: a guest agent served over pipes. It
// owns one goroutine (the HTTP server), stopped and waited for by stop.
type sandbox struct {
	agent *guest.Agent
	srv   *http.Server
	ln    *pipelisten.Listener
	done  chan struct{}
}

// startSandbox starts a guest agent for spec: its default user is the
// spec's, else the image's (see hostUser); its processes start in the
// image's working directory when the host has one by that path.
func startSandbox(spec driver.Spec, log *slog.Logger) (*sandbox, error) {
	user := hostUser(spec.User, spec.Image.User, log)
	agent, err := guest.New(guest.Config{DefaultUser: user, DefaultDir: spec.Image.WorkingDir, Env: sandboxEnv(spec), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("start guest agent: %w", err)
	}
	sb := &sandbox{
		agent: agent,
		srv:   &http.Server{Handler: agent.Handler(), ReadHeaderTimeout: 10 * time.Second},
		ln:    pipelisten.New("fake-guest"),
		done:  make(chan struct{}),
	}
	go func() {
		defer close(sb.done)
		_ = sb.srv.Serve(sb.ln) // returns ErrServerClosed on stop
	}()
	return sb, nil
}

// stop closes the server and the agent (which kills its processes) and
// waits for the server goroutine.
func (sb *sandbox) stop() {
	_ = sb.srv.Close()
	<-sb.done
	_ = sb.agent.Close()
}

func (sb *sandbox) dial(ctx context.Context) (net.Conn, error) { return sb.ln.Dial(ctx) }

// sandboxEnv is the agent's base environment: the image env, the spec env
// on top, and the host PATH when the image has none.
func sandboxEnv(spec driver.Spec) []string {
	env := slices.Clone(spec.Image.Env)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	if !slices.ContainsFunc(env, func(kv string) bool { return len(kv) > 5 && kv[:5] == "PATH=" }) {
		env = append(env, "PATH="+os.Getenv("PATH"))
	}
	return env
}

// Create implements driver.Driver: make the directory, write the state,
// start the agent; each step is undone when a later one fails.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if d.cfg.FailCreate != nil {
		if err := d.cfg.FailCreate(ctx, spec); err != nil {
			return nil, err
		}
	}
	dir, err := d.dir(spec.ID)
	if err != nil {
		return nil, err
	}
	if h, err := d.existing(dir, spec.ID); h != nil || err != nil {
		return h, err
	}
	if err := checkUpperDir(spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errdefs.Wrap(errdefs.Canceled, err, "create sandbox %s", spec.ID)
	}
	raw, err := d.makeDir(dir, spec)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, errdefs.Wrap(errdefs.KindOf(err), err, "create sandbox %s", spec.ID)
	}
	sb, err := startSandbox(spec, d.log.With("sandbox", spec.ID))
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if sb != nil {
			sb.stop()
		}
		_ = os.RemoveAll(dir)
		return nil, errdefs.Wrap(errdefs.KindOf(err), err, "create sandbox %s", spec.ID)
	}
	register(dir, sb)
	return &driver.Handle{ID: spec.ID, Driver: d.cfg.Name, Version: stateVersion, State: raw}, nil
}

// checkUpperDir checks spec.UpperDir as the gVisor driver does: a clean
// absolute path of an empty directory.
func checkUpperDir(spec driver.Spec) error {
	dir := spec.UpperDir
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsAny(dir, ":,\\") {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox %s: upper dir %q: want a clean absolute path without ':', ',' or '\\'", spec.ID, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errdefs.Wrap(errdefs.InvalidArgument, err, "create sandbox %s: upper dir %s", spec.ID, dir)
	}
	if len(entries) > 0 {
		return errdefs.New(errdefs.InvalidArgument, "create sandbox %s: upper dir %s is not empty", spec.ID, dir)
	}
	return nil
}

// existing returns the handle of a running sandbox in dir, FailedPrecondition
// for a stopped one, nothing when there is none.
func (d *Driver) existing(dir, id string) (*driver.Handle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	if lookup(dir) == nil {
		return nil, errdefs.New(errdefs.FailedPrecondition, "create sandbox %s: exists and is not running; destroy it first", id)
	}
	return &driver.Handle{ID: id, Driver: d.cfg.Name, Version: stateVersion, State: raw}, nil
}

// makeDir creates the sandbox directory with its state.json.
func (d *Driver) makeDir(dir string, spec driver.Spec) (json.RawMessage, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make sandbox dir: %w", err)
	}
	raw, err := json.Marshal(state{Dir: dir, Spec: spec, StartedAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o600); err != nil {
		return nil, fmt.Errorf("write sandbox state: %w", err)
	}
	return raw, nil
}

// hostUser is the default user of a fake sandbox: specUser, else
// imageUser. The fake's processes run on the host, so users are host
// accounts: a user name the host does not know (an image's "user") is
// replaced by root, with a log line, instead of failing every request.
func hostUser(specUser, imageUser string, log *slog.Logger) string {
	u := specUser
	if u == "" {
		u = imageUser
	}
	name, _, _ := strings.Cut(u, ":")
	if name == "" || strings.Trim(name, "0123456789") == "" {
		return u
	}
	if _, err := osuser.Lookup(name); err != nil {
		log.Info("fake sandbox: user unknown on the host, running as root", "user", name)
		return "root"
	}
	return u
}
