package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
)

// imageFile is the one file Suspend writes into the caller's directory.
const imageFile = "fake-suspend.json"

// suspendedFile marks a sandbox directory as suspended; it holds the
// image directory Suspend wrote to.
const suspendedFile = "suspended"

// image is the content of imageFile: what Resume and Clone start from.
type image struct {
	Format      string      `json:"format"`
	ID          string      `json:"id"`
	Spec        driver.Spec `json:"spec"`
	SuspendedAt time.Time   `json:"suspended_at"`
}

// imageFormat names the imageFile layout, so a corrupt or foreign file is
// told apart from a valid one.
const imageFormat = "den-fake-suspend/1"

// Suspend implements driver.Suspender: it writes the sandbox's spec into
// dir and stops its agent. The fake has no memory image: the agent's
// processes die and a resumed sandbox starts a fresh agent.
func (d *Driver) Suspend(ctx context.Context, id string, dir string) error {
	if d.cfg.FailSuspend != nil {
		if err := d.cfg.FailSuspend(ctx, id, dir); err != nil {
			return err
		}
	}
	sbDir, err := d.writeImage(ctx, "suspend", id, dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(sbDir, suspendedFile), []byte(dir), 0o600); err != nil {
		return fmt.Errorf("suspend sandbox %s: mark suspended: %w", id, err)
	}
	if sb := unregister(sbDir); sb != nil {
		sb.stop()
	}
	return nil
}

// Checkpoint implements driver.Suspender: Suspend's file, and the sandbox
// goes on running.
func (d *Driver) Checkpoint(ctx context.Context, id string, dir string) error {
	if d.cfg.FailSuspend != nil {
		if err := d.cfg.FailSuspend(ctx, id, dir); err != nil {
			return err
		}
	}
	_, err := d.writeImage(ctx, "checkpoint", id, dir)
	return err
}

// writeImage checks that sandbox id runs and writes its imageFile into
// dir; it returns the sandbox directory. op names the operation in errors.
func (d *Driver) writeImage(ctx context.Context, op, id, dir string) (string, error) {
	sbDir, err := d.dir(id)
	if err != nil {
		return "", err
	}
	st, err := readState(sbDir)
	if err != nil {
		return "", fmt.Errorf("%s sandbox %s: %w", op, id, err)
	}
	if lookup(sbDir) == nil {
		return "", errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: not running", op, id)
	}
	if st.Spec.UpperDir != "" {
		return "", errdefs.New(errdefs.FailedPrecondition, "%s sandbox %s: its root filesystem is an upper dir", op, id)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) > 0 || !filepath.IsAbs(dir) {
		return "", errdefs.New(errdefs.InvalidArgument, "%s sandbox %s: %s is not an empty directory", op, id, dir)
	}
	if err := ctx.Err(); err != nil {
		return "", errdefs.Wrap(errdefs.Canceled, err, "%s sandbox %s", op, id)
	}
	raw, err := json.Marshal(image{Format: imageFormat, ID: id, Spec: st.Spec, SuspendedAt: time.Now().UTC()})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, imageFile), raw, 0o600); err != nil {
		return "", fmt.Errorf("%s sandbox %s: write image: %w", op, id, err)
	}
	return sbDir, nil
}

// Resume implements driver.Suspender: a fresh agent for the sandbox.
func (d *Driver) Resume(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if d.cfg.FailResume != nil {
		if err := d.cfg.FailResume(ctx, spec, dir); err != nil {
			return nil, err
		}
	}
	sbDir, err := d.dir(spec.ID)
	if err != nil {
		return nil, err
	}
	st, err := readState(sbDir)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if !suspended(sbDir) {
		return nil, errdefs.New(errdefs.FailedPrecondition, "resume sandbox %s: not suspended", spec.ID)
	}
	img, err := readImage(dir)
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if img.ID != spec.ID {
		return nil, errdefs.New(errdefs.InvalidArgument, "resume sandbox %s: %s holds sandbox %s", spec.ID, dir, img.ID)
	}
	if err := ctx.Err(); err != nil {
		return nil, errdefs.Wrap(errdefs.Canceled, err, "resume sandbox %s", spec.ID)
	}
	sb, err := startSandbox(st.Spec, d.log.With("sandbox", spec.ID))
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	if err := os.Remove(filepath.Join(sbDir, suspendedFile)); err != nil {
		sb.stop()
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	register(sbDir, sb)
	raw, err := os.ReadFile(filepath.Join(sbDir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("resume sandbox %s: %w", spec.ID, err)
	}
	return &driver.Handle{ID: spec.ID, Driver: d.cfg.Name, Version: stateVersion, State: raw}, nil
}

// Clone implements driver.Suspender: a Create of spec (the fake has no
// processes or files to copy).
func (d *Driver) Clone(ctx context.Context, spec driver.Spec, dir string) (*driver.Handle, error) {
	if d.cfg.FailClone != nil {
		if err := d.cfg.FailClone(ctx, spec, dir); err != nil {
			return nil, err
		}
	}
	sbDir, err := d.dir(spec.ID)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(sbDir); err == nil {
		return nil, errdefs.New(errdefs.AlreadyExists, "clone into sandbox %s: exists", spec.ID)
	}
	if _, err := readImage(dir); err != nil {
		return nil, fmt.Errorf("clone into sandbox %s: %w", spec.ID, err)
	}
	if spec.UpperDir != "" {
		return nil, errdefs.New(errdefs.InvalidArgument, "clone into sandbox %s: a clone cannot have an upper dir", spec.ID)
	}
	return d.Create(ctx, spec)
}

// readImage reads and checks the imageFile in dir.
func readImage(dir string) (image, error) {
	var img image
	raw, err := os.ReadFile(filepath.Join(dir, imageFile))
	if errors.Is(err, os.ErrNotExist) {
		return img, errdefs.New(errdefs.InvalidArgument, "no suspended sandbox in %s", dir)
	}
	if err != nil {
		return img, fmt.Errorf("read suspended sandbox: %w", err)
	}
	if err := json.Unmarshal(raw, &img); err != nil || img.Format != imageFormat {
		return img, errdefs.New(errdefs.InvalidArgument, "%s is not a suspended fake sandbox", filepath.Join(dir, imageFile))
	}
	return img, nil
}

// suspended reports whether the sandbox in sbDir is suspended.
func suspended(sbDir string) bool {
	_, err := os.Stat(filepath.Join(sbDir, suspendedFile))
	return err == nil
}
