package gvisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/driver/warmpool"
	"github.com/denhq/den/internal/errdefs"
)

// claimSteps turn a warm spare into sandbox spec.ID. The spare's runsc
// container keeps its ID (runsc cannot rename one) and so does its cgroup:
// the state records both. The rename into sandboxes/<id> comes last, so a
// crash before it leaves only a spare, which the next New destroys.
//
// The claimed sandbox's den.json is written after the claim returns, while
// the node records the sandbox: the handle already holds the new state, and
// the spare's den.json differs from it only in Dir and StartedAt. Every read
// of the file waits for that write (stateWrites), and Recover writes the
// handle's state when a crash came first (den.json still names the spare's
// directory). So is the record of the network it takes over (see
// sandboxnet.Manager.Move): until it is written, a restart finds the
// network under the spare's ID, and Recover moves it back.
var claimSteps = []step{
	{"apply env and hostname", (*creation).initGuest},
	{"encode state", (*creation).encodeClaimState},
	{"take over the network", (*creation).claimNetwork},
	{"move into place", (*creation).moveIntoPlace},
}

// claim creates spec from a ready spare of shape sh. It returns nothing
// (and no error) when the pool has no such spare, or when the claim failed
// for another reason than ctx: the spare is destroyed and the caller
// creates cold.
func (d *Driver) claim(ctx context.Context, spec driver.Spec, p paths, sh warmpool.Shape) (*driver.Handle, error) {
	sp, ok := d.pool.Take(sh.Key)
	if !ok {
		return nil, nil
	}
	begin := time.Now()
	c := &creation{d: d, spec: spec, p: p, from: sp}
	if err := d.runSteps(ctx, c, claimSteps); err != nil {
		if c.conn != nil {
			c.conn.Close()
		}
		if errdefs.Is(err, errdefs.Canceled) {
			return nil, err
		}
		d.log.Warn("claim of a warm spare failed; creating cold", "sandbox", spec.ID, "spare", sp.id, "err", err)
		return nil, nil
	}
	d.claims.Add(1)
	stateWrites.start(p.stateFile(), func() {
		if err := writeStateData(p, c.raw); err != nil {
			d.log.Error("write the state of a claimed sandbox; its next Recover writes it", "sandbox", spec.ID, "err", err)
		}
		if c.recordNet == nil {
			return
		}
		if err := c.recordNet(); err != nil {
			d.log.Error("record the network of a claimed sandbox; its next Recover does", "sandbox", spec.ID, "err", err)
		}
	})
	if c.initPending {
		socket := p.socket()
		d.conns.putInit(spec.ID, c.conn, func(ctx context.Context) error { return postInit(ctx, socket, c.init) })
	} else {
		d.conns.put(spec.ID, c.conn) // for the first DialGuest
	}
	d.log.Info("sandbox created", "sandbox", spec.ID, "spare", sp.id, "took", time.Since(begin))
	return c.handle(), nil
}

// initGuest sends the spec's env, hostname and default user to the guest
// agent (a spare boots with the image's user). It waits only for the send:
// the answer is read in the background and the sandbox's first DialGuest
// waits for it (see conns.go). Without the spare's connection it sends on
// a new one and waits for the answer. Its undo destroys the spare,
// wherever it is by then.
func (c *creation) initGuest(ctx context.Context) (func(context.Context) error, error) {
	undo := func(ctx context.Context) error { return c.d.destroySpare(ctx, c.from) }
	hostname := c.spec.Hostname
	if hostname == "" {
		hostname = c.spec.ID
	}
	c.init = guestInit{Env: c.spec.Env, Hostname: hostname, DefaultUser: c.spec.User}
	if conn := c.from.conn; conn != nil {
		c.from.conn = nil
		if err := sendInit(conn, c.init); err == nil {
			c.conn, c.initPending = conn, true
			return undo, nil
		}
		conn.Close()
	}
	conn, err := dialUnix(ctx, c.from.p.socket())
	if err != nil {
		if ctxErr(err) {
			return undo, err
		}
		return undo, errdefs.Wrap(errdefs.Unavailable, err, "guest init")
	}
	if err := exchangeInit(ctx, conn, c.init); err != nil {
		conn.Close()
		return undo, err
	}
	c.conn = conn
	return undo, nil
}

// encodeClaimState makes the spare's state the sandbox's, for its handle:
// its final directory, its runtime ID, and the claim as its start. The
// claim writes it to den.json once the spare is in place.
func (c *creation) encodeClaimState(ctx context.Context) (func(context.Context) error, error) {
	st, err := readState(c.from.p)
	if err != nil {
		return nil, err
	}
	st.Dir, st.RuntimeID, st.StartedAt = c.p.dir, st.runtimeID(c.from.id), time.Now().UTC()
	c.raw, err = json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode sandbox state: %w", err)
	}
	return nil, nil
}

// moveIntoPlace renames the spare's directory to the sandbox's; the
// mounted rootfs and the guest socket move with it.
func (c *creation) moveIntoPlace(ctx context.Context) (func(context.Context) error, error) {
	err := unix.Renameat2(unix.AT_FDCWD, c.from.p.dir, unix.AT_FDCWD, c.p.dir, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return nil, errdefs.Wrap(errdefs.Conflict, err, "move spare %s into place", c.from.id)
	}
	if err != nil {
		return nil, fmt.Errorf("move spare %s into place: %w", c.from.id, err)
	}
	return func(ctx context.Context) error { return c.d.destroyRuntime(ctx, c.from.runtimeID(), c.p) }, nil
}

// guestInit is the body of the guest agent's internal POST /init.
type guestInit struct {
	Env      map[string]string `json:"env,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	// DefaultUser, when set, replaces the agent's default user.
	DefaultUser string `json:"defaultUser,omitempty"`
}
