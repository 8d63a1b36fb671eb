package qemu

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// QMP commands of checkpoints (see suspend.go).

// migratePoll is the interval of query-migrate and query-chardev polls.
const migratePoll = 5 * time.Millisecond

// maxBandwidth is the migration bandwidth limit in bytes/s: unlimited in
// effect (QEMU 7.2 defaults to 128 MiB/s, which a local file needs not).
const maxBandwidth = 100 << 30

// downtimeLimit is the migration's downtime limit in ms. The VM is paused
// before the migration starts, so the downtime is not ours to bound; a
// high limit lets QEMU finish in one pass.
const downtimeLimit = 60_000

// portCloseTimeout bounds the wait for the guest to let go of the agent
// port before a checkpoint (see cutGuest).
const portCloseTimeout = 5 * time.Second

// setMigration sets the migration capabilities and parameters: with
// ignoreShared (x-ignore-shared) the stream skips RAM mapped share=on.
// Both ends of a migration need the same capabilities.
func (q *qmp) setMigration(ctx context.Context, ignoreShared, outgoing bool) error {
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": ignoreShared}}
	if err := q.exec(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return err
	}
	if !outgoing {
		return nil
	}
	params := map[string]any{"max-bandwidth": int64(maxBandwidth), "downtime-limit": downtimeLimit}
	return q.exec(ctx, "migrate-set-parameters", params, nil)
}

// execFD runs command with args as exec does, sending f's descriptor with
// it (SCM_RIGHTS): how getfd hands QEMU a file.
func (q *qmp) execFD(ctx context.Context, command string, args any, f *os.File) error {
	return q.call(ctx, command, args, nil, f)
}

// migrationInfo is the part of query-migrate's answer we read.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// waitMigration polls query-migrate until the migration completed: nil,
// or an Unavailable error when it failed. exited, when not nil, reports
// the QEMU's exit ("" while it runs): an incoming migration that fails
// ends QEMU (7.2 exits on a failed load).
func (q *qmp) waitMigration(ctx context.Context, exited func() string) error {
	for {
		var info migrationInfo
		if err := q.exec(ctx, "query-migrate", nil, &info); err != nil {
			if exited != nil && exited() != "" {
				return errdefs.New(errdefs.Unavailable, "qemu exited during the migration: %s", exited())
			}
			return err
		}
		switch info.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return errdefs.New(errdefs.Unavailable, "migration %s: %s", info.Status, info.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migratePoll):
		}
	}
}

// waitRunState polls query-status until the VM's run state is want.
func (q *qmp) waitRunState(ctx context.Context, want string) error {
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := q.exec(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		if st.Status == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migratePoll):
		}
	}
}

// waitPortClosed polls query-chardev until the guest does not hold the
// port of chardev label open ("frontend-open" is the virtio-serial port's
// guest side), within timeout: an error says it did not happen.
func (q *qmp) waitPortClosed(ctx context.Context, label string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var devs []struct {
			Label        string `json:"label"`
			FrontendOpen bool   `json:"frontend-open"`
		}
		if err := q.exec(ctx, "query-chardev", nil, &devs); err != nil {
			return err
		}
		found := false
		for _, c := range devs {
			if c.Label == label {
				if !c.FrontendOpen {
					return nil
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("no chardev %q", label)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the guest held the port open for %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(migratePoll):
		}
	}
}

// dialQMPRetry connects to the QMP socket in dir of a QEMU that is
// starting, retrying until it accepts, QEMU exited (exited() != ""),
// ctx ends or timeout passed.
func dialQMPRetry(ctx context.Context, dir string, exited func() string, timeout time.Duration) (*qmp, error) {
	deadline := time.Now().Add(timeout)
	for {
		q, err := dialQMP(ctx, dir+"/qmp.sock")
		if err == nil {
			return q, nil
		}
		if s := exited(); s != "" {
			return nil, errdefs.New(errdefs.Unavailable, "qemu exited before its monitor answered: %s", s)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
