// Package sim is a simulated runtime: it lets one machine load den's
// control plane at full scale (`den agent --sim N` runs thousands of
// simulated nodes). A sandbox is an entry in memory; its guest agent
// answers the envd health check and process.Start with simulated
// processes: no fork, no file system, no isolation, nothing on disk, so a
// sandbox costs a few hundred bytes and a command a few microseconds.
//
// A simulated process is a command line read as a tiny shell: commands
// separated by ";", each one of `echo ARGS` (">&2" sends it to stderr),
// `true`, `false`, `exit N` and `sleep SECONDS`. Anything else ends with
// exit status 127 and a message on stderr. `sh -c SCRIPT` and `bash -c
// SCRIPT` run SCRIPT that way; other commands run as one command line.
//
// The simulator passes the lifecycle part of the driver conformance suite
// (drivertest.RunLifecycle). Sandboxes do not outlive the process: Recover
// after a restart answers NotFound.
package sim

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/pipelisten"
	"github.com/denhq/den/internal/errdefs"
)

// Name is the runtime's name.
const Name = "sim"

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// Driver runs simulated sandboxes.
type Driver struct {
	mu        sync.Mutex
	sandboxes map[string]time.Time // started at, by ID; guarded by mu
	guests    *pipelisten.Listener
	srv       *http.Server
}

// New starts a simulator.
func New() *Driver {
	d := &Driver{sandboxes: map[string]time.Time{}, guests: pipelisten.New("sim")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// No gzip: simulated output is a few bytes, and compressing it would
	// be most of a command's cost.
	mux.Handle(processconnect.NewProcessHandler(processService{}, connect.WithCompression("gzip", nil, nil)))
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go d.srv.Serve(d.guests)
	return d
}

// Capabilities: a simulator has no isolation and no limits.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Name: Name, Isolation: "none", List: true}
}

// Create records the sandbox; it is running at once.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (*driver.Handle, error) {
	if !validID.MatchString(spec.ID) {
		return nil, errdefs.New(errdefs.InvalidArgument, "sandbox ID %q: want 1-128 of [A-Za-z0-9_-], not starting with - or _", spec.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, errdefs.Wrap(errdefs.Canceled, err, "create %s", spec.ID)
	}
	d.mu.Lock()
	if _, ok := d.sandboxes[spec.ID]; !ok {
		d.sandboxes[spec.ID] = time.Now()
	}
	d.mu.Unlock()
	return &driver.Handle{ID: spec.ID, Driver: Name, Version: 1}, nil
}

// Recover finds a sandbox of this process; a simulated sandbox does not
// survive its process.
func (d *Driver) Recover(_ context.Context, h *driver.Handle) error {
	if h.Version != 1 {
		return errdefs.New(errdefs.FailedPrecondition, "sim handle version %d: this build reads version 1", h.Version)
	}
	if _, err := d.started(h.ID); err != nil {
		return err
	}
	return nil
}

func (d *Driver) started(id string) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.sandboxes[id]
	if !ok {
		return time.Time{}, errdefs.New(errdefs.NotFound, "sandbox %s not found", id)
	}
	return at, nil
}

// Status: a simulated sandbox runs until it is destroyed.
func (d *Driver) Status(_ context.Context, id string) (driver.Status, error) {
	at, err := d.started(id)
	if err != nil {
		return driver.Status{}, err
	}
	return driver.Status{Running: true, StartedAt: at}, nil
}

// DialGuest connects to the simulated guest agent.
func (d *Driver) DialGuest(ctx context.Context, id string) (net.Conn, error) {
	if _, err := d.started(id); err != nil {
		return nil, err
	}
	return d.guests.Dial(ctx)
}

// HandOffGuest serves a stream from afar as the sandbox's guest agent
// (driver.GuestHandoff), with no pipe between.
func (d *Driver) HandOffGuest(_ context.Context, id string, accept func() (net.Conn, error)) error {
	if _, err := d.started(id); err != nil {
		return err
	}
	if conn, err := accept(); err == nil {
		d.guests.Hand(conn)
	}
	return nil
}

// Destroy forgets the sandbox.
func (d *Driver) Destroy(_ context.Context, id string) error {
	d.mu.Lock()
	delete(d.sandboxes, id)
	d.mu.Unlock()
	return nil
}

// List is every sandbox of this driver.
func (d *Driver) List(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.sandboxes))
	for id := range d.sandboxes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Close stops the guest agents; the simulated sandboxes are gone with it.
func (d *Driver) Close() error {
	d.guests.Close()
	return d.srv.Close()
}
