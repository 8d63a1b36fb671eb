package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
)

func TestServerConfigValidateNamesTheFlag(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"even bootstrap", ServerConfig{ID: "s1", BootstrapExpect: 2}, "--bootstrap-expect must be 1, 3 or 5, got 2"},
		{"neither form nor join", ServerConfig{ID: "s1"}, "set --bootstrap-expect (1, 3 or 5) to form a new cluster, or --join ADDR to join one"},
		{"bad join", ServerConfig{ID: "s1", Join: []string{"10.0.0.2"}}, `--join "10.0.0.2" is not the host:port of another server's cluster port (e.g. 10.0.0.2:7301)`},
		{"bad advertise", ServerConfig{ID: "s1", BootstrapExpect: 1, Advertise: "10.0.0.1:0"}, `--advertise "10.0.0.1:0" is not host:port of this server (e.g. 10.0.0.1:7301)`},
		{"bad cluster listen", ServerConfig{ID: "s1", BootstrapExpect: 1, ClusterListen: "7301"}, `--cluster-listen "7301" is not host:port (e.g. 127.0.0.1:7070)`},
		{"bad id", ServerConfig{ID: "S 1", BootstrapExpect: 1}, `--id (default: the host name): ID "S 1" may hold only a-z, 0-9, '-', '_' and '.'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DataDir = dir
			err := tt.cfg.Validate()
			if !errdefs.Is(err, errdefs.InvalidArgument) || err.Error() != tt.want {
				t.Fatalf("Validate() = %v (kind %v), want invalid_argument %q", err, errdefs.KindOf(err), tt.want)
			}
		})
	}
	ok := ServerConfig{DataDir: dir, ID: "s1", BootstrapExpect: 3}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(valid) = %v", err)
	}
	if ok.CADir != filepath.Join(dir, "ca") || ok.ClusterListen != "0.0.0.0:7301" || ok.Listen != "127.0.0.1:7070" {
		t.Errorf("defaults: ca dir %q, cluster listen %q, listen %q", ok.CADir, ok.ClusterListen, ok.Listen)
	}
}

func TestServerAdvertise(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 7301}
	for _, tc := range []struct {
		cfg  ServerConfig
		want string
	}{
		{ServerConfig{ClusterListen: "127.0.0.1:0"}, "127.0.0.1:7301"},
		{ServerConfig{ClusterListen: "0.0.0.0:7301", Advertise: "10.1.2.3:9000"}, "10.1.2.3:9000"},
	} {
		got, err := tc.cfg.advertise(bound)
		if err != nil || got != tc.want {
			t.Errorf("advertise(%+v) = %q, %v; want %q", tc.cfg, got, err, tc.want)
		}
	}
}

// TestServerCA: the first server creates the CA; one that joins without a
// copy fails naming --ca-dir.
func TestServerCA(t *testing.T) {
	dir := t.TempDir()
	r := &serverRun{cfg: ServerConfig{CADir: filepath.Join(dir, "ca")}, log: discardLogger()}
	if err := r.loadCA(context.Background()); err != nil {
		t.Fatalf("first server: %v", err)
	}
	again, err := pki.LoadCA(filepath.Join(dir, "ca"))
	if err != nil || again.Hash() != r.ca.Hash() {
		t.Fatalf("the saved CA = %v, %v; want the one created", again, err)
	}

	j := &serverRun{cfg: ServerConfig{CADir: filepath.Join(dir, "other"), Join: []string{"10.0.0.1:7301"}}, log: discardLogger()}
	err = j.loadCA(context.Background())
	want := "no cluster CA in " + filepath.Join(dir, "other") + ": copy the CA directory (ca.pem and ca-key.pem) of the first server there, point --ca-dir at it, or join with a server token (den token create --server, then --token)"
	if !errdefs.Is(err, errdefs.FailedPrecondition) || err.Error() != want {
		t.Fatalf("joining without a CA = %v, want failed_precondition %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a joining server created a CA directory: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
