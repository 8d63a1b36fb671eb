package gvisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// Pre-dialled guest connections. Dialling a sandbox's guest agent costs a
// millisecond or two (a connection through runsc's host socket), and a
// claim would pay it twice on the way to its first command: once for the
// guest's /init, once for the first DialGuest. So a warm spare dials its
// agent while it waits, the claim sends /init over that connection
// (HTTP/1.1, kept alive), and the first DialGuest of the claimed sandbox
// gets it. The agent never closes an idle connection. A connection the
// sandbox's state change would cut (suspend, checkpoint, destroy) is
// dropped first.

// initExchangeTimeout bounds an /init exchange when ctx has no deadline.
const initExchangeTimeout = 30 * time.Second

// guestConns holds at most one pre-dialled guest connection per sandbox.
type guestConns struct {
	mu sync.Mutex
	m  map[string]net.Conn
}

// put stores conn for sandbox id, closing one stored before.
func (g *guestConns) put(id string, conn net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]net.Conn{}
	}
	if old := g.m[id]; old != nil {
		old.Close()
	}
	g.m[id] = conn
}

// take removes and returns sandbox id's connection, or nil.
func (g *guestConns) take(id string) net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	conn := g.m[id]
	delete(g.m, id)
	return conn
}

// drop closes and forgets sandbox id's connection.
func (g *guestConns) drop(id string) {
	if conn := g.take(id); conn != nil {
		conn.Close()
	}
}

// closeAll closes every stored connection.
func (g *guestConns) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, conn := range g.m {
		conn.Close()
		delete(g.m, id)
	}
}

// postInit sends body to the guest agent behind socket as POST /init on a
// connection of its own.
func postInit(ctx context.Context, socket string, body guestInit) error {
	conn, err := dialUnix(ctx, socket)
	if err != nil {
		if ctxErr(err) {
			return err
		}
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init")
	}
	defer conn.Close()
	return exchangeInit(ctx, conn, body)
}

// exchangeInit sends body as POST /init on conn and reads the answer. On
// success conn is ready for the next HTTP/1.1 request.
func exchangeInit(ctx context.Context, conn net.Conn, body guestInit) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode guest init: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(initExchangeTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init")
	}
	defer conn.SetDeadline(time.Time{})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://guest/init", bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init: send")
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init: read answer")
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errdefs.New(errdefs.Unavailable, "guest init: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	if br.Buffered() > 0 || resp.Close {
		return errdefs.New(errdefs.Unavailable, "guest init: the agent did not keep the connection open")
	}
	return nil
}
