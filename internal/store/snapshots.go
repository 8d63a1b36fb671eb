package store

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/denhq/den/internal/errdefs"
)

// SandboxSnapshot is a saved sandbox kept as an object of its own: the
// memory, processes and filesystem of a running sandbox at one moment,
// sealed on its node. It is immutable once stored, outlives its source
// sandbox and belongs to the source's tenant. It is recorded only once its
// files are complete. A data contract persisted in the raft log: add
// fields, never rename or retype them.
type SandboxSnapshot struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Tenant string `json:"tenant"`
	// Sandbox is the ID of the source sandbox (which may be gone).
	Sandbox string `json:"sandbox"`
	// Node holds the files; Runtime wrote them and alone can read them.
	Node    string `json:"node"`
	Runtime string `json:"runtime,omitempty"`

	// The source's image and size; a sandbox created from the snapshot
	// gets them.
	Image    string            `json:"image,omitempty"`
	CPUs     float64           `json:"cpus,omitempty"`
	MemoryMB int64             `json:"memory_mb,omitempty"`
	DiskMB   int64             `json:"disk_mb,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	User     string            `json:"user,omitempty"`

	// Size is the total size of the files in bytes; Digest is
	// "sha256:<hex>" of their manifest, which pins every file. For mode
	// filesystem, Size is the size of the layer blob and Digest the
	// image's manifest digest (its ID when it has no manifest).
	Size   int64  `json:"size"`
	Digest string `json:"digest"`

	// Mode is SnapshotModeFilesystem or SnapshotModeMemory; empty means
	// memory (records written before filesystem snapshots existed).
	Mode string `json:"mode,omitempty"`
	// FilesystemImage, for mode filesystem, is the ID of the untagged
	// image in the node's image store that holds the snapshot: Image's
	// layers plus FilesystemLayer, Image's config. Sandboxes created from
	// the snapshot boot cold on it.
	FilesystemImage string `json:"filesystem_image,omitempty"`
	// FilesystemLayer is the diff ID of the layer of the source's root
	// filesystem changes (mode filesystem).
	FilesystemLayer string `json:"filesystem_layer,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Snapshot modes (SandboxSnapshot.Mode).
const (
	// SnapshotModeMemory: memory, processes and files, as files of the
	// node's snapshot objects; new sandboxes continue from it (Clone).
	SnapshotModeMemory = "memory"
	// SnapshotModeFilesystem: the root filesystem's changes only, as an
	// image layer; new sandboxes boot cold on it.
	SnapshotModeFilesystem = "filesystem"
)

// IsFilesystem reports whether s holds files only (mode filesystem).
func (s *SandboxSnapshot) IsFilesystem() bool { return s.Mode == SnapshotModeFilesystem }

// Clone returns a deep copy of s.
func (s *SandboxSnapshot) Clone() *SandboxSnapshot {
	if s == nil {
		return nil
	}
	c := *s
	if s.Env != nil {
		c.Env = make(map[string]string, len(s.Env))
		for k, v := range s.Env {
			c.Env[k] = v
		}
	}
	return &c
}

// snapshotCmd is the body of create_snapshot.
type snapshotCmd struct {
	Snapshot *SandboxSnapshot `json:"snapshot"`
}

func validateSnapshot(s *SandboxSnapshot) error {
	switch {
	case s.ID == "":
		return errdefs.New(errdefs.InvalidArgument, "snapshot id is required")
	case s.Tenant == "":
		return errdefs.New(errdefs.InvalidArgument, "snapshot %s: tenant is required", s.ID)
	case s.Digest == "":
		return errdefs.New(errdefs.InvalidArgument, "snapshot %s: digest is required", s.ID)
	case s.Mode != "" && s.Mode != SnapshotModeMemory && s.Mode != SnapshotModeFilesystem:
		return errdefs.New(errdefs.InvalidArgument, "snapshot %s: mode must be %q or %q, got %q", s.ID, SnapshotModeMemory, SnapshotModeFilesystem, s.Mode)
	case s.IsFilesystem() && (s.FilesystemImage == "" || s.FilesystemLayer == ""):
		return errdefs.New(errdefs.InvalidArgument, "snapshot %s: a filesystem snapshot needs its image and layer", s.ID)
	}
	return nil
}

func applyCreateSnapshot(txn *memdb.Txn, index uint64, body []byte) error {
	var c snapshotCmd
	if err := decodeBody(cmdCreateSnapshot, body, &c); err != nil {
		return err
	}
	s := c.Snapshot
	if s == nil {
		return errdefs.New(errdefs.InvalidArgument, "snapshot id is required")
	}
	if err := validateSnapshot(s); err != nil {
		return err
	}
	old, err := txn.First(tableSnapshots, indexID, s.ID)
	if err != nil {
		return fmt.Errorf("apply create snapshot %s: %w", s.ID, err)
	}
	if old != nil {
		return errdefs.New(errdefs.AlreadyExists, "snapshot %s already exists", s.ID)
	}
	if s.Name != "" {
		other, err := txn.First(tableSnapshots, indexName, s.Tenant, s.Name)
		if err != nil {
			return fmt.Errorf("apply create snapshot %s: %w", s.ID, err)
		}
		if other != nil {
			return errdefs.New(errdefs.AlreadyExists, "snapshot name %q is taken by snapshot %s", s.Name, other.(*SandboxSnapshot).ID)
		}
	}
	s.ModifyIndex = index
	if err := txn.Insert(tableSnapshots, s); err != nil {
		return fmt.Errorf("apply create snapshot %s: %w", s.ID, err)
	}
	return nil
}

// SandboxSnapshot returns the snapshot with the ID; NotFound when absent.
func (sn *Snapshot) SandboxSnapshot(id string) (*SandboxSnapshot, error) {
	raw, err := sn.db.Txn(false).First(tableSnapshots, indexID, id)
	if err != nil {
		return nil, fmt.Errorf("get snapshot %s: %w", id, err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "snapshot %s not found", id)
	}
	return raw.(*SandboxSnapshot).Clone(), nil
}

// SandboxSnapshotByName returns the tenant's snapshot with the name;
// NotFound when there is none.
func (sn *Snapshot) SandboxSnapshotByName(tenant, name string) (*SandboxSnapshot, error) {
	raw, err := sn.db.Txn(false).First(tableSnapshots, indexName, tenant, name)
	if err != nil {
		return nil, fmt.Errorf("get snapshot by name: %w", err)
	}
	if raw == nil {
		return nil, errdefs.New(errdefs.NotFound, "snapshot named %q not found", name)
	}
	return raw.(*SandboxSnapshot).Clone(), nil
}

// SandboxSnapshots lists the tenant's snapshots (every snapshot when
// tenant is empty) ordered by (CreatedAt, ID).
func (sn *Snapshot) SandboxSnapshots(tenant string) ([]*SandboxSnapshot, error) {
	it, err := sn.db.Txn(false).Get(tableSnapshots, indexCreated)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*SandboxSnapshot
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if s := raw.(*SandboxSnapshot); tenant == "" || s.Tenant == tenant {
			out = append(out, s.Clone())
		}
	}
	return out, nil
}
