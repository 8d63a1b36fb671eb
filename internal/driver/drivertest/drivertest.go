// Package drivertest is the conformance suite every den runtime driver
// (and the fake) must pass: Run(t, factory) exercises the lifecycle, the
// guest channel, isolation, recovery, resource limits, the image's user,
// working directory and env, and root filesystems captured in an UpperDir,
// through the driver.Driver contract and the envd process API of the
// guest agent.
//
// It also exports small helpers (Exec, Shell, GuestHTTPClient) that other
// tests reuse to run commands in a sandbox.
package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/denhq/den/internal/driver"
)

// Factory returns a driver and a template Spec (image, default limits)
// for one subtest. Calling it again with the same t models an agent
// restart: it must return a NEW driver instance over the same state (same
// configuration, same state directory); TempDir helps with that.
type Factory func(t *testing.T) (driver.Driver, driver.Spec)

// Options extends Run with optional, driver-specific hooks.
type Options struct {
	// Leftovers lists host state sandbox id left behind (directories,
	// mounts, cgroups). The suite expects none after Destroy and after a
	// failed Create. Nil skips those checks.
	Leftovers func(t *testing.T, id string) []string
	// KillInit kills the sandbox's init (the guest agent) from outside, as a
	// crash would. Nil skips the test that needs it.
	KillInit func(t *testing.T, d driver.Driver, id string)
}

// Run runs the conformance suite against the drivers newDriver returns.
func Run(t *testing.T, newDriver Factory) { RunOptions(t, newDriver, Options{}) }

// RunOptions is Run with driver-specific hooks.
func RunOptions(t *testing.T, newDriver Factory, opts Options) {
	s := &suite{newDriver: newDriver, opts: opts}
	for _, tc := range s.tests() {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t)
		})
	}
}

// lifecycleTests are the cases a runtime with no operating system of its
// own passes (the simulator, internal/driver/sim): the contract's
// lifecycle, errors and the process API with a shell's echo and exit.
var lifecycleTests = []string{"Capabilities", "Lifecycle", "CreateIdempotent", "DestroyIdempotent", "DestroyUnknown",
	"StatusUnknown", "DialGuestUnknown", "InvalidID", "CreateCancelled", "ExecEcho", "ExitCode", "Stderr", "List"}

// RunLifecycle runs the lifecycle part of the suite (lifecycleTests).
func RunLifecycle(t *testing.T, newDriver Factory) {
	s := &suite{newDriver: newDriver}
	for _, tc := range s.tests() {
		if slices.Contains(lifecycleTests, tc.name) {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t) })
		}
	}
}

type suite struct {
	newDriver Factory
	opts      Options
}

type testCase struct {
	name string
	fn   func(t *testing.T)
}

var (
	tempDirsMu sync.Mutex
	tempDirs   = map[*testing.T]string{}
)

// TempDir returns the same temporary directory for every call with the
// same t: a factory uses it as the state directory so that a second call
// (an agent restart) sees the first instance's state.
func TempDir(t *testing.T) string {
	tempDirsMu.Lock()
	defer tempDirsMu.Unlock()
	if dir, ok := tempDirs[t]; ok {
		return dir
	}
	dir := t.TempDir()
	tempDirs[t] = dir
	t.Cleanup(func() {
		tempDirsMu.Lock()
		delete(tempDirs, t)
		tempDirsMu.Unlock()
	})
	return dir
}

var unsafeID = regexp.MustCompile(`[^a-z0-9]+`)

// newID is a fresh sandbox ID, unique across test processes (sandbox IDs
// may name host-global state such as cgroups).
func newID(t *testing.T) string {
	name := t.Name()
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	name = unsafeID.ReplaceAllString(strings.ToLower(name), "-")
	if len(name) > 24 {
		name = name[:24]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "dt-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b[:])
}

// testCtx bounds one subtest's calls; the suite never asserts on time.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
