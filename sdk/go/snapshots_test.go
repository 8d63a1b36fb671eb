package den_test

import (
	"context"
	"errors"
	"testing"

	"github.com/denhq/den/api/rest"
	den "github.com/denhq/den/sdk/go"
	"github.com/denhq/den/sdk/go/dentest"
)

func TestSnapshotsAndFork(t *testing.T) {
	srv := dentest.NewServer(dentest.Config{APIKey: testKey})
	t.Cleanup(srv.Close)
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src, err := c.Create(ctx, rest.CreateSandboxRequest{MemoryMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, rest.CreateSnapshotRequest{Sandbox: src.ID, Name: "base"})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sandbox != src.ID || snap.MemoryMB != 128 || snap.Name != "base" {
		t.Fatalf("snapshot: %+v", snap)
	}
	if got, err := c.GetSnapshot(ctx, "base"); err != nil || got.ID != snap.ID {
		t.Fatalf("GetSnapshot: %+v, %v", got, err)
	}
	sb, err := c.Create(ctx, rest.CreateSandboxRequest{Snapshot: "base"})
	if err != nil || sb.FromSnapshot != snap.ID || sb.MemoryMB != 128 {
		t.Fatalf("create from snapshot: %+v, %v", sb, err)
	}
	copies, err := c.Fork(ctx, sb.ID, rest.ForkRequest{Count: 3})
	if err != nil || len(copies) != 3 {
		t.Fatalf("Fork: %d copies, %v", len(copies), err)
	}
	if list, err := c.ListSnapshots(ctx); err != nil || len(list) != 1 {
		t.Fatalf("ListSnapshots after fork: %v, %v", list, err)
	}
	_, err = c.Fork(ctx, sb.ID, rest.ForkRequest{Count: 65})
	var apiErr *den.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Message != "count must be between 1 and 64, got 65" {
		t.Fatalf("Fork count 65: %v", err)
	}
	if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSnapshot(ctx, snap.ID); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("GetSnapshot after delete: %v", err)
	}
}
