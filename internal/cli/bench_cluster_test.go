package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/image"
	den "github.com/denhq/den/sdk/go"
)

func TestTinyDockerArchiveImports(t *testing.T) {
	archive, err := tinyDockerArchive(benchImage)
	if err != nil {
		t.Fatal(err)
	}
	st, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Import(context.Background(), bytes.NewReader(archive), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(benchImage); err != nil || got.ID != img.ID {
		t.Fatalf("the archive's name %s: %+v %v", benchImage, got, err)
	}
}

func TestFanOutCountsEveryOperation(t *testing.T) {
	var calls atomic.Int64
	s := fanOut(1000, 64, func(i int) error {
		calls.Add(1)
		if i%10 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if calls.Load() != 1000 || s.N != 1000 || s.OK != 900 || len(s.Errors) == 0 {
		t.Fatalf("calls %d, stats %+v", calls.Load(), s)
	}
}

// checkDedicated finds the nodes of pools other tenants own and counts
// the bench tenant's sandboxes placed on them; its own pools and the
// shared nodes do not count.
func TestCheckDedicated(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/tenants":
			json.NewEncoder(w).Encode([]rest.Tenant{
				{Name: "default", Placement: rest.Placement{NodePools: []string{"mine"}}},
				{Name: "other", Placement: rest.Placement{NodePools: []string{"theirs"}}},
			})
		case "/v1/nodes":
			json.NewEncoder(w).Encode(rest.NodeList{Nodes: []rest.Node{
				{ID: "n-shared", Cluster: &rest.NodeDetail{}},
				{ID: "n-mine", Cluster: &rest.NodeDetail{Pool: "mine"}},
				{ID: "n-theirs-1", Cluster: &rest.NodeDetail{Pool: "theirs"}},
				{ID: "n-theirs-2", Cluster: &rest.NodeDetail{Pool: "theirs"}},
			}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := den.NewClient(den.Options{URL: srv.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	dedicated, violations, err := checkDedicated(context.Background(), c, "default",
		[]string{"n-shared", "n-mine", "n-theirs-2", "", "n-shared", "n-theirs-1"})
	if err != nil || dedicated != 2 || violations != 2 {
		t.Fatalf("checkDedicated = %d dedicated nodes, %d violations, %v; want 2, 2", dedicated, violations, err)
	}
}
