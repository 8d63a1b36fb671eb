package gvisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
//
// The claim does not wait for the answer to /init, a round trip into the
// sandbox (3 ms here): it returns once the request is sent, and the answer
// is read in the background while the create is recorded and answered.
// Every DialGuest of the sandbox waits for that answer, so no request
// reaches the agent before its env, hostname and user are applied, and an
// init that failed fails them all with its reason.

// initExchangeTimeout bounds an /init exchange when ctx has no deadline.
const initExchangeTimeout = 30 * time.Second

// guestConns holds at most one pre-dialled guest connection per sandbox,
// with the claim's /init when its answer is pending or failed.
type guestConns struct {
	mu sync.Mutex
	m  map[string]*guestConn
}

// guestConn is a pre-dialled connection. With init, conn carries the
// pending answer and is not usable until init.done is closed with no error.
type guestConn struct {
	conn net.Conn
	init *pendingInit
}

// pendingInit is an /init whose answer is read in the background.
type pendingInit struct {
	done chan struct{}
	err  error // set before done is closed
}

// put stores conn for sandbox id, closing one stored before.
func (g *guestConns) put(id string, conn net.Conn) {
	g.store(id, &guestConn{conn: conn})
}

func (g *guestConns) store(id string, gc *guestConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*guestConn{}
	}
	if old := g.m[id]; old != nil && old.conn != nil {
		old.conn.Close()
	}
	g.m[id] = gc
}

// putInit stores conn for sandbox id, on which the /init request was sent,
// and reads its answer in the background. When no answer can be read
// while the sandbox still has this entry (the spare's connection was cut),
// retry sends the init again on a new connection: applying an init twice
// is the same as once.
func (g *guestConns) putInit(id string, conn net.Conn, retry func(context.Context) error) {
	pi := &pendingInit{done: make(chan struct{})}
	gc := &guestConn{conn: conn, init: pi}
	g.store(id, gc)
	go func() {
		defer close(pi.done)
		err := readInitAnswer(conn, time.Now().Add(initExchangeTimeout))
		if err != nil && !isAnswer(err) && g.holds(id, gc) {
			// Cut before the answer: drop the connection, send again.
			g.mu.Lock()
			gc.conn.Close()
			gc.conn = nil
			g.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), initExchangeTimeout)
			defer cancel()
			err = retry(ctx)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		pi.err = err
		if err != nil && gc.conn != nil {
			gc.conn.Close()
			gc.conn = nil
		}
	}()
}

// holds reports whether gc is still sandbox id's entry.
func (g *guestConns) holds(id string, gc *guestConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[id] == gc
}

// take waits for sandbox id's pending /init, if any, and returns its
// pre-dialled connection (nil when there is none or another took it), or
// the error of the init.
func (g *guestConns) take(ctx context.Context, id string) (net.Conn, error) {
	g.mu.Lock()
	gc := g.m[id]
	g.mu.Unlock()
	if gc == nil {
		return nil, nil
	}
	if pi := gc.init; pi != nil {
		select {
		case <-pi.done:
		case <-ctx.Done():
			return nil, errdefs.Wrap(errdefs.Unavailable, ctx.Err(), "dial guest of sandbox %s: wait for its init", id)
		}
		if pi.err != nil {
			return nil, errdefs.Wrap(errdefs.Unavailable, pi.err, "sandbox %s: its guest agent did not apply the env, hostname and user of the create; delete it and create it again", id)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[id] != gc {
		return nil, nil
	}
	conn := gc.conn
	gc.conn = nil
	if gc.init == nil || gc.init.err == nil {
		delete(g.m, id)
	}
	return conn, nil
}

// drop closes and forgets sandbox id's connection.
func (g *guestConns) drop(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gc := g.m[id]; gc != nil && gc.conn != nil {
		gc.conn.Close()
	}
	delete(g.m, id)
}

// closeAll closes every stored connection.
func (g *guestConns) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, gc := range g.m {
		if gc.conn != nil {
			gc.conn.Close()
		}
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
	if err := sendInit(conn, body); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(initExchangeTimeout)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	err := readInitAnswer(conn, deadline)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// sendInit writes body to conn as POST /init.
func sendInit(conn net.Conn, body guestInit) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode guest init: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://guest/init", bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := conn.SetWriteDeadline(time.Now().Add(initExchangeTimeout)); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init")
	}
	defer conn.SetWriteDeadline(time.Time{})
	if err := req.Write(conn); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init: send")
	}
	return nil
}

// initAnswerError is an answer of the agent to /init other than 204.
type initAnswerError struct{ msg string }

func (e *initAnswerError) Error() string { return e.msg }

// isAnswer reports whether err is the agent's answer, rather than a
// failure to read one.
func isAnswer(err error) bool {
	var ae *initAnswerError
	return errors.As(err, &ae)
}

// readInitAnswer reads the answer to /init from conn. On success conn is
// ready for the next HTTP/1.1 request.
func readInitAnswer(conn net.Conn, deadline time.Time) error {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init")
	}
	defer conn.SetReadDeadline(time.Time{})
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		return errdefs.Wrap(errdefs.Unavailable, err, "guest init: read answer")
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errdefs.Wrap(errdefs.Unavailable, &initAnswerError{fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))}, "guest init")
	}
	if br.Buffered() > 0 || resp.Close {
		return errdefs.New(errdefs.Unavailable, "guest init: the agent did not keep the connection open")
	}
	return nil
}
