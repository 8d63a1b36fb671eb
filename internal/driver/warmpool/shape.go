package warmpool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/hostmem"
	"github.com/denhq/den/internal/sandboxnet"
)

// Shape is what a spare is started with: the parts of a Spec that are
// fixed when the runtime starts, and for a clone the checkpoint it is
// restored from. Env, Hostname, User and the network's policy are not
// among them (whether there is a network is): a claim applies them.
type Shape struct {
	// Key identifies the shape: equal shapes have equal keys.
	Key string
	// Spec is the spares' spec; ID, Env, Hostname and User are empty.
	Spec driver.Spec
	// From is the checkpoint directory of a clone's shape ("" otherwise).
	From string
}

// ShapeOf returns the shape of spec booted cold. Image.Ref is left out: it
// is a label.
func ShapeOf(spec driver.Spec) Shape { return CloneShapeOf(spec, "") }

// CloneShapeOf returns the shape of a clone of spec from checkpoint
// directory from ("" for a booted sandbox).
func CloneShapeOf(spec driver.Spec, from string) Shape {
	s := driver.Spec{
		Image: driver.Image{
			Layers: slices.Clone(spec.Image.Layers), Env: slices.Clone(spec.Image.Env),
			WorkingDir: spec.Image.WorkingDir, User: spec.Image.User,
		},
		CPUs: spec.CPUs, MemoryMB: spec.MemoryMB, DiskMB: spec.DiskMB,
	}
	if spec.Network != nil {
		s.Network = spareNetwork(*spec.Network)
	}
	data, _ := json.Marshal(struct { // plain strings and numbers: cannot fail
		Spec driver.Spec `json:"spec"`
		From string      `json:"from,omitempty"`
	}{s, from})
	sum := sha256.Sum256(data)
	return Shape{Key: hex.EncodeToString(sum[:8]), Spec: s, From: from}
}

// spareNetwork is the network policy a spare for a sandbox of policy p
// boots with. A sandbox of the default policy (the internet on, no rules:
// nearly every create) gets a spare that already has it, so its claim
// changes no firewall rule (an nftables transaction costs ~10 ms here).
// Any other policy gets a spare that refuses everything, and the claim
// applies the policy: a spare never had more access than the sandbox it
// becomes, so nothing its warm-up opened outlives a stricter policy.
func spareNetwork(p sandboxnet.Policy) *sandboxnet.Policy {
	if p.Internet && len(p.Allow) == 0 && len(p.Deny) == 0 {
		d := sandboxnet.DefaultPolicy()
		return &d
	}
	return &sandboxnet.Policy{}
}

// memoryReserveMB is host memory a spare's boot leaves free, beyond the
// spare's own memory limit.
const memoryReserveMB = 512

// HostMemoryShort says why the host cannot take a spare of spec now: its
// available memory would fall below the spare's limit plus a reserve.
// Empty when it can, or when /proc/meminfo cannot be read. It is the
// Memory check drivers give their pools.
func HostMemoryShort(spec driver.Spec) string {
	mem, err := hostmem.Read()
	if err != nil {
		return ""
	}
	if need := spec.MemoryMB + memoryReserveMB; mem.AvailableMB < need {
		return fmt.Sprintf("the host has %d MiB of memory available; a spare needs %d MiB (its limit and a %d MiB reserve)", mem.AvailableMB, need, memoryReserveMB)
	}
	return ""
}
