package clustermux

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/denhq/den/internal/pki"
)

func tlsPair(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer("s1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return ca.ServerConfig(cert, pki.RoleServer), pki.ClientConfig(ca.Pool(), cert)
}

// TestMuxRoutesByFirstByte: each connection reaches the listener of the
// byte it sent; a connection with an unknown byte is closed.
func TestMuxRoutesByFirstByte(t *testing.T) {
	srvTLS, cliTLS := tlsPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(ln, srvTLS, nil)
	raftLn, rpcLn := m.Listener(ProtoRaft), m.Listener(ProtoRPC)
	m.Serve()
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tc := range []struct {
		proto byte
		ln    net.Listener
	}{{ProtoRaft, raftLn}, {ProtoRPC, rpcLn}} {
		t.Run(String(tc.proto), func(t *testing.T) {
			c, err := Dial(ctx, m.Addr().String(), tc.proto, cliTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			got, err := tc.ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			buf := make([]byte, 2)
			if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "hi" {
				t.Fatalf("read %q, %v; want \"hi\"", buf, err)
			}
		})
	}

	t.Run("unknown protocol", func(t *testing.T) {
		c, err := Dial(ctx, m.Addr().String(), 'X', cliTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection of an unknown protocol stayed open")
		}
	})

	t.Run("closed mux refuses", func(t *testing.T) {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := raftLn.Accept(); err == nil {
			t.Fatal("Accept after Close succeeded")
		}
		if _, err := Dial(ctx, m.Addr().String(), ProtoRaft, cliTLS); err == nil {
			t.Fatal("Dial after Close succeeded")
		}
	})
}
