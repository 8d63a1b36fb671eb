package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/localcluster"
	"github.com/denhq/den/internal/testenv"
	den "github.com/denhq/den/sdk/go"
)

// serverBin returns the den binary for `den server` tests: $DEN_BIN or
// bin/den. Unlike den up, den server needs neither root nor runsc.
func serverBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("DEN_BIN")
	if p == "" {
		p = filepath.Join(testenv.RepoRoot(), "bin", "den")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "den binary not found at %s: run `make build`", p)
	}
	return p
}

// TestClusterOfThreeServers: three den server processes form a cluster;
// state written through one is used through another; den server members
// shows one leader; after kill -9 of the leader the others take writes.
func TestClusterOfThreeServers(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startServers(ctx, t, localcluster.Config{Bin: bin, Servers: 3})
	s1, s2, s3 := client(t, c.Servers[0]), client(t, c.Servers[1]), client(t, c.Servers[2])

	// A tenant made on s1, its key made on s2, used on s3.
	if _, err := s1.CreateTenant(ctx, rest.CreateTenantRequest{Name: "acme"}); err != nil {
		t.Fatalf("create tenant on s1: %v", err)
	}
	key, err := s2.CreateAPIKey(ctx, rest.CreateAPIKeyRequest{Tenant: "acme", Name: "ci"})
	if err != nil {
		t.Fatalf("create key on s2: %v", err)
	}
	acme, err := den.NewClient(den.Options{URL: c.Servers[2].URL, APIKey: key.Secret})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := acme.GetTenant(ctx, "acme"); err != nil || got.Name != "acme" {
		t.Fatalf("acme's key on s3: GetTenant = %+v, %v", got, err)
	}
	var apiErr *den.APIError
	if _, err := s3.CreateTenant(ctx, rest.CreateTenantRequest{Name: "acme"}); !errors.As(err, &apiErr) || apiErr.Code != "already_exists" {
		t.Fatalf("create acme again on s3 = %v, want already_exists", err)
	}

	members := serverMembers(t, bin, c.Servers[1])
	leaders := 0
	for _, m := range members.Members {
		if m.Role == rest.MemberLeader {
			leaders++
		}
	}
	if len(members.Members) != 3 || leaders != 1 {
		t.Fatalf("den server members = %+v, want 3 with one leader", members.Members)
	}

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	for _, s := range c.Servers {
		if s == leader {
			continue
		}
		// A write that a kept connection had sent to the dead leader fails
		// with unavailable (it is not replayed blind: it may have been
		// applied); the client retries it, as the API asks, and a retry
		// of one that was applied finds it there.
		for attempt := 0; ; attempt++ {
			_, err := client(t, s).CreateTenant(ctx, rest.CreateTenantRequest{Name: "after-" + s.ID})
			var apiErr *den.APIError
			if err == nil || (attempt > 0 && errors.As(err, &apiErr) && apiErr.Code == "already_exists") {
				break
			}
			if !errors.As(err, &apiErr) || apiErr.Code != "unavailable" || attempt >= 20 {
				t.Fatalf("write on %s after kill -9 of leader %s (attempt %d): %v", s.ID, leader.ID, attempt+1, err)
			}
			time.Sleep(200 * time.Millisecond) // the API's "retry shortly"
		}
	}
	// Each survivor reads its own write at once (read-your-writes) and the
	// other's once replicated.
	for _, s := range c.Servers {
		if s == leader {
			continue
		}
		if _, err := client(t, s).GetTenant(ctx, "after-"+s.ID); err != nil {
			t.Errorf("%s does not read its own write: %v", s.ID, err)
		}
		for _, o := range c.Servers {
			if o != leader && o != s {
				waitTenant(ctx, t, client(t, s), "after-"+o.ID)
			}
		}
	}
}

// startServers starts the den servers of cfg in a temporary directory,
// stopped when t ends; their logs are printed if t fails.
func startServers(ctx context.Context, t *testing.T, cfg localcluster.Config) *localcluster.Cluster {
	t.Helper()
	cfg.Dir = t.TempDir()
	c, err := localcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start %d servers: %v", cfg.Servers, err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, s := range c.Servers {
				if b, err := os.ReadFile(s.LogPath); err == nil {
					t.Logf("%s log:\n%s", s.ID, tail(string(b), 6000))
				}
			}
		}
	})
	return c
}

// waitTenant polls cl until it knows tenant name.
func waitTenant(ctx context.Context, t *testing.T, cl *den.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cl.GetTenant(ctx, name)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s never replicated: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func client(t *testing.T, s *localcluster.Server) *den.Client {
	t.Helper()
	cl, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// serverMembers runs `den server members --json` against s.
func serverMembers(t *testing.T, bin string, s *localcluster.Server) rest.ClusterMemberList {
	t.Helper()
	out, err := exec.Command(bin, "server", "members", "--json", "--url", s.URL, "--api-key", s.APIKey).Output()
	if err != nil {
		t.Fatalf("den server members: %v", err)
	}
	var list rest.ClusterMemberList
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("den server members --json: %v: %s", err, out)
	}
	return list
}

// TestBenchFailoverPlacements runs one trial of `den bench failover
// --sim-nodes`: kill -9 of the leader, then the first sandbox a new leader
// places; the command fails if a create was lost or doubled or a node
// over-committed.
func TestBenchFailoverPlacements(t *testing.T) {
	bin := serverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report := filepath.Join(t.TempDir(), "failover.json")
	out, err := exec.CommandContext(ctx, bin, "bench", "failover", "--trials", "1", "--sim-nodes", "3", "--json", report).CombinedOutput()
	if err != nil {
		t.Fatalf("den bench failover: %v\n%s", err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Kind                       string
		TrialsMs                   []float64 `json:"trials_ms"`
		Acked, Missing, Duplicated int
		Overcommitted              int `json:"overcommitted_nodes"`
		SimNodes                   int `json:"sim_nodes"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Kind != "sandbox" || rep.SimNodes != 3 || len(rep.TrialsMs) != 1 || rep.TrialsMs[0] <= 0 || rep.Acked == 0 ||
		rep.Missing != 0 || rep.Duplicated != 0 || rep.Overcommitted != 0 {
		t.Fatalf("report %+v\n%s", rep, out)
	}
	t.Logf("first placement on the new leader %.0f ms after kill -9; %d sandboxes created", rep.TrialsMs[0], rep.Acked)
}
