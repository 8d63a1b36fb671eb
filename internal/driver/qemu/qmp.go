package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/denhq/den/internal/errdefs"
)

// qmp is a connection to a VM's QMP monitor (qmp.sock in its directory).
// QEMU serves one QMP client at a time, so a connection is made for one
// operation and closed after it.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

// qmpTimeout bounds one QMP exchange when ctx has no earlier deadline.
const qmpTimeout = 30 * time.Second

// dialQMP connects to the monitor at path and leaves capability
// negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	conn, err := dialUnix(ctx, path)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.Unavailable, err, "connect to QMP at %s", path)
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(time.Now().Add(qmpTimeout))
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, errdefs.Wrap(errdefs.Unavailable, fmt.Errorf("no QMP greeting: %v", err), "connect to QMP at %s", path)
	}
	if err := q.exec(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) Close() error { return q.conn.Close() }

// read decodes the next message.
func (q *qmp) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// qmpError is a command's error reply.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// exec runs command with args and decodes its return value into ret (nil
// to ignore it). Events that arrive meanwhile are skipped.
func (q *qmp) exec(ctx context.Context, command string, args, ret any) error {
	return q.call(ctx, command, args, ret, nil)
}

// call sends command with args, with f's descriptor (SCM_RIGHTS) when f
// is not nil, and decodes the reply into ret (nil to ignore it).
func (q *qmp) call(ctx context.Context, command string, args, ret any, f *os.File) error {
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Now()) })
	defer stop()
	q.conn.SetDeadline(time.Now().Add(qmpTimeout))
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if f == nil {
		_, err = q.conn.Write(data)
	} else if uc, ok := q.conn.(*net.UnixConn); !ok {
		return fmt.Errorf("qmp %s: the monitor connection cannot pass descriptors", command)
	} else {
		_, _, err = uc.WriteMsgUnix(data, unix.UnixRights(int(f.Fd())), nil)
	}
	if err != nil {
		return q.fail(ctx, command, err)
	}
	for {
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *qmpError       `json:"error"`
		}
		if err := q.read(&msg); err != nil {
			return q.fail(ctx, command, err)
		}
		switch {
		case msg.Error != nil:
			return fmt.Errorf("qmp %s: %w", command, msg.Error)
		case msg.Return != nil:
			if ret == nil {
				return nil
			}
			return json.Unmarshal(msg.Return, ret)
		}
		// an event: not ours
	}
}

func (q *qmp) fail(ctx context.Context, command string, err error) error {
	if ctx.Err() != nil {
		return errdefs.Wrap(errdefs.Canceled, ctx.Err(), "qmp %s", command)
	}
	return errdefs.Wrap(errdefs.Unavailable, err, "qmp %s", command)
}

// qmpDo connects to the VM in dir, runs one command and disconnects.
func qmpDo(ctx context.Context, dir, command string, args, ret any) error {
	q, err := dialQMP(ctx, dir+"/qmp.sock")
	if err != nil {
		return err
	}
	defer q.Close()
	return q.exec(ctx, command, args, ret)
}
