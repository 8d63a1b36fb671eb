// Package linktest connects the two ends of a node link over loopback TCP
// for tests, without TLS (internal/cluster's tests cover the handshake).
package linktest

import (
	"context"
	"net"
	"testing"

	"github.com/denhq/den/internal/nodelink"
)

// Connect starts a node link for node nodeID: the server end serves
// serverMux with the node's identity in its handlers' context, the agent
// end serves agentMux. Both close when t ends.
func Connect(t testing.TB, serverMux, agentMux *nodelink.Mux, nodeID string) (server, agent *nodelink.Session) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	agent, err = nodelink.Client(c, agentMux, nodelink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sc := <-acc
	if sc == nil {
		t.Fatal("accept failed")
	}
	server, err = nodelink.Server(sc, serverMux, nodelink.Options{Context: nodelink.WithPeer(context.Background(), nodeID)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close(); server.Close() })
	return server, agent
}
