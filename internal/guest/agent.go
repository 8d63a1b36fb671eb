// Package guest is den's in-sandbox agent. It serves the E2B "envd"
// protocol: the process and filesystem Connect services and the /files,
// /health and /envs HTTP routes, so that the unmodified e2b SDKs and den's
// own SDK can run commands and move files inside a sandbox.
//
// An Agent owns every process it starts. It may run as PID 1 of the
// sandbox, in which case it also reaps orphaned children (see reaper.go)
// without stealing the exit statuses of its own processes.
//
// A Server serves an Agent on its listen addresses and lets go of every
// socket around a checkpoint of the sandbox, on request of the checkpoint
// hook over a control socket (server.go, checkpoint.go).
package guest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/api/envd/filesystem/filesystemconnect"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/internal/errdefs"
)

// Config configures an Agent. The zero Config is valid.
type Config struct {
	// DefaultUser is the user a request acts as when it names none (no
	// "Authorization: Basic" header, no username parameter). "" means root.
	DefaultUser string
	// Env is the base environment, "K=V" entries, of every process the agent
	// starts. Nil means os.Environ().
	Env []string
	// DefaultDir is the working directory of processes whose request names
	// none (the image's WORKDIR). "" or a directory that does not exist
	// means the user's home, as in envd.
	DefaultDir string
	// Logger receives the agent's logs. Nil discards them.
	Logger *slog.Logger
	// MemoryLimitBytes turns the OOM killer on (see oom.go): once the
	// sandbox's memory use exceeds it, the largest process tree is killed.
	// 0 means no killer.
	MemoryLimitBytes uint64
	// SelfPath is the den-guest binary the agent runs its helper commands
	// with (`den-guest sftp-server`); "" means /proc/self/exe.
	SelfPath string
}

// Agent serves the envd protocol. Its methods are safe for concurrent use.
type Agent struct {
	cfg     Config // cfg.Env is guarded by envMu: POST /init replaces it
	envMu   sync.RWMutex
	log     *slog.Logger
	users   userDB
	lookups *lookups // of process starts; shares users' fsGen
	procs   *procTable
	watch   *watchers
	oom     *oomKiller // nil without a memory limit
	// accepted holds connections of remote forwards (listen.go) until
	// the host fetches them.
	accepted acceptedConns

	startPathLogged sync.Once // the first process start logs forkexec's path

	slowSubscriber time.Duration      // see defaultSlowSubscriber; tests lower it
	sethostname    func(string) error // unix.Sethostname; tests replace it

	ctx    context.Context // cancelled by Close; stops owned goroutines
	cancel context.CancelFunc
	once   sync.Once

	goMu    sync.Mutex
	closing bool           // no goroutine starts once set; guarded by goMu
	wg      sync.WaitGroup // owned goroutines
}

// New returns an Agent for cfg. When the calling process is PID 1 the agent
// also starts reaping orphaned zombies until Close; with a memory limit it
// runs its OOM killer until Close.
func New(cfg Config) (*Agent, error) {
	a := newAgent(cfg, newUserDB("/etc/passwd", "/etc/group", newFSGen()))
	if os.Getpid() == 1 {
		a.startReaper()
	}
	a.startOOMKiller()
	return a, nil
}

// newAgent builds an Agent without starting the reaper or the OOM killer.
func newAgent(cfg Config, users userDB) *Agent {
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.DefaultUser == "" {
		cfg.DefaultUser = "root"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, log: log, users: users, ctx: ctx, cancel: cancel, slowSubscriber: defaultSlowSubscriber,
		sethostname: func(h string) error { return unix.Sethostname([]byte(h)) }}
	a.lookups = newLookups(users.fsGen())
	a.procs = newProcTable()
	a.watch = newWatchers()
	a.oom = newOOMKiller(cfg.MemoryLimitBytes)
	return a
}

// Handler returns the handler of every envd route: the Connect services
// process.Process and filesystem.Filesystem, and GET/POST /files, GET
// /health and GET /envs; and the internal POST /init of the runtime driver
// (see serveInit), which the control plane never forwards from clients;
// and den's upgrades: GET /ports/{port} (ports.go), GET
// /ports/{port}/listen and /accepted/{id} (listen.go), GET /sftp
// (sftp.go). It speaks HTTP/1.1 itself; the caller enables h2c.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(processconnect.NewProcessHandler(&processService{a: a}))
	mux.Handle(filesystemconnect.NewFilesystemHandler(&fsService{a: a}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /envs", a.serveEnvs)
	mux.HandleFunc("POST /init", a.serveInit)
	mux.HandleFunc("GET /files", a.serveDownload)
	mux.HandleFunc("POST /files", a.serveUpload)
	mux.HandleFunc("GET /ports/{port}", a.servePort)
	mux.HandleFunc("GET /ports/{port}/listen", a.serveListen)
	mux.HandleFunc("GET /accepted/{id}", a.serveAccepted)
	mux.HandleFunc("GET /sftp", a.serveSFTP)
	return mux
}

// Close kills every process the agent started (with their process groups),
// stops all watchers and the reaper, and waits for the agent's goroutines.
// It is idempotent.
func (a *Agent) Close() error {
	a.once.Do(func() {
		// Under spawnMu no spawn is half done, and none starts after cancel.
		a.procs.spawnMu.Lock()
		a.cancel()
		a.procs.spawnMu.Unlock()
		a.procs.killAll()
		a.watch.closeAll()
		a.goMu.Lock()
		a.closing = true
		a.goMu.Unlock()
		a.wg.Wait()
		a.users.fsGen().Close() // after the last start: none uses it now
	})
	return nil
}

// goOwned runs fn in a goroutine the agent owns: Close waits for it. It
// reports false, and does not run fn, once Close has begun waiting.
func (a *Agent) goOwned(fn func()) bool {
	a.goMu.Lock()
	defer a.goMu.Unlock()
	if a.closing {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn()
	}()
	return true
}

// account returns the account a request acts as: explicit (a username
// parameter) if set, else the Basic user in h, else the default user.
func (a *Agent) account(h http.Header, explicit string) (*account, error) {
	name := explicit
	if name == "" {
		var err error
		if name, err = basicUser(h); err != nil {
			return nil, err
		}
	}
	if name == "" {
		name = a.defaultUser()
	}
	return a.users.lookup(name)
}

// errUnknownProcess is returned for a pid or tag with no running process.
var errUnknownProcess = errors.New("process not found")

func notFoundProcess(sel string) error {
	return errdefs.Wrap(errdefs.NotFound, errUnknownProcess, "process %s", sel)
}
