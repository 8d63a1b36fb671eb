package gvisor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/denhq/den/internal/errdefs"
)

// The guest agent binary a sandbox runs must not change under it while it
// is suspended: a restore re-opens the bind-mounted file, and the restored
// agent's memory maps it (measured: resuming after the binary at the same
// path was replaced by another build hangs until the start timeout). So
// New installs Config.GuestBinary content-addressed,
//
//	guest/<sha256 prefix>/den-guest
//
// under StateDir, once per content; sandboxes bind that copy and record
// its path (sandboxState.GuestBinary, manifest.GuestBinary), and Resume
// and Clone bind the one the checkpoint was taken with. Copies are never
// removed by the driver: they are small, one per den-guest build.
const guestDirName = "guest"

// installGuestBinary copies src to its content-addressed path under
// stateDir (unless it is there) and returns that path.
func installGuestBinary(stateDir, src string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", errdefs.Wrap(errdefs.InvalidArgument, err, "gvisor driver: guest binary")
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("gvisor driver: hash guest binary: %w", err)
	}
	dir := filepath.Join(stateDir, guestDirName, hex.EncodeToString(h.Sum(nil))[:16])
	dst := filepath.Join(dir, "den-guest")
	if info, err := os.Stat(dst); err == nil && info.Size() == size {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("gvisor driver: install guest binary: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".den-guest-*")
	if err != nil {
		return "", fmt.Errorf("gvisor driver: install guest binary: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	_, err = io.Copy(tmp, f)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", fmt.Errorf("gvisor driver: install guest binary: %w", err)
	}
	return dst, nil
}

// guestBinaryFor is the guest binary to bind for a sandbox restored from a
// checkpoint taken with recorded (empty for sandboxes that predate the
// record: they get the current one). FailedPrecondition when it is gone.
func (d *Driver) guestBinaryFor(recorded string) (string, error) {
	if recorded == "" {
		return d.guestBin, nil
	}
	if _, err := os.Stat(recorded); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errdefs.New(errdefs.FailedPrecondition, "the guest agent binary the checkpoint was taken with (%s) is gone", recorded)
		}
		return "", err
	}
	return recorded, nil
}
