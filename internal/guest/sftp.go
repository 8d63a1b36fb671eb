package guest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/denhq/den/internal/errdefs"
)

// SFTP: GET /sftp with "Connection: Upgrade" and "Upgrade: den-sftp"
// starts an SFTP server (github.com/pkg/sftp) on the sandbox's real file
// system, as the request's user (the "Authorization: Basic" user, else the
// default one), answers 101 and turns the connection into the server's
// stdin and stdout. The SSH gateway pipes an SSH client's "sftp"
// subsystem channel to it, so sftp, scp (which speaks SFTP since OpenSSH
// 9) and sshfs work in every image, whether or not it has an sftp-server.
//
// The server is this agent's own binary run as `den-guest sftp-server`
// (SFTPServerCommand) with the user's credential, home as working
// directory and environment, so that the kernel checks every file access
// against that user. It ends when its stream ends.

// SFTPUpgrade is the Upgrade protocol of GET /sftp.
const SFTPUpgrade = "den-sftp"

// SFTPServerCommand is the argv[1] with which den-guest serves SFTP on
// its stdin and stdout (see ServeSFTP).
const SFTPServerCommand = "sftp-server"

// sftpWaitDelay bounds how long the end of an SFTP server waits for the
// copying of its stdin and stdout once the process has exited.
const sftpWaitDelay = 2 * time.Second

// serveSFTP serves GET /sftp: see the comment at the top of the file.
func (a *Agent) serveSFTP(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r, SFTPUpgrade) {
		writeHTTPError(w, errdefs.New(errdefs.InvalidArgument, "GET /sftp needs HTTP/1.1 with Connection: Upgrade and Upgrade: %s", SFTPUpgrade))
		return
	}
	acct, err := a.account(r.Header, "")
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	cred, err := acct.credential()
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	dir, _, _ := uncached.workDir(acct, "", "")
	cmd := &exec.Cmd{
		Path: a.selfPath(), Args: []string{"den-guest", SFTPServerCommand},
		Env: acct.environ(a.baseEnv(), nil), Dir: dir,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Credential: cred},
		WaitDelay:   sftpWaitDelay,
	}
	conn, br, ok := switchProtocols(w, SFTPUpgrade, nil)
	if !ok {
		return
	}
	cmd.Stdin, cmd.Stdout = br, conn
	if err := cmd.Start(); err != nil {
		a.log.Warn("sftp server did not start", "user", acct.Name, "err", err)
		conn.Close()
		return
	}
	a.log.Info("sftp server started", "pid", cmd.Process.Pid, "user", acct.Name)
	if !a.goOwned(func() { a.awaitSFTP(cmd, conn) }) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		conn.Close()
	}
}

// awaitSFTP waits for an SFTP server to end (its stream ended, or the
// agent closes) and closes its stream.
func (a *Agent) awaitSFTP(cmd *exec.Cmd, conn net.Conn) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-a.ctx.Done():
			_ = cmd.Process.Kill()
			conn.Close()
		case <-stop:
		}
	}()
	_ = cmd.Wait()
	conn.Close()
}

// selfPath is the agent's own executable, for the helper commands it runs
// (SFTPServerCommand); /proc/self/exe also reaches a binary whose path is
// gone (a microVM's init after switch_root).
func (a *Agent) selfPath() string {
	if a.cfg.SelfPath != "" {
		return a.cfg.SelfPath
	}
	return "/proc/self/exe"
}

// ServeSFTP serves the SFTP protocol on r and w (a process's stdin and
// stdout) over the real file system, relative paths resolving against
// the working directory, until r ends.
func ServeSFTP(r io.Reader, w io.WriteCloser) error {
	dir, err := os.Getwd()
	if err != nil {
		dir = "/"
	}
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{r, w}, sftp.WithServerWorkingDirectory(dir))
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Serve(); err != nil && err != io.EOF {
		return err
	}
	return nil
}

// isUpgrade reports whether r is an HTTP/1.1 upgrade to proto.
func isUpgrade(r *http.Request, proto string) bool {
	return r.ProtoMajor == 1 && headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", proto)
}

// switchProtocols takes over w's connection and answers 101 with proto
// and the extra headers. It returns the connection and a reader of it
// holding what the client sent after the request; ok is false (and the
// connection closed) when that failed.
func switchProtocols(w http.ResponseWriter, proto string, extra http.Header) (net.Conn, *bufio.Reader, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeHTTPError(w, errdefs.Wrap(errdefs.Internal, err, "take over the connection"))
		return nil, nil, false
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + proto + "\r\n"
	for k, vs := range extra {
		for _, v := range vs {
			resp += k + ": " + v + "\r\n"
		}
	}
	_, err = brw.WriteString(resp + "\r\n")
	if err == nil {
		err = brw.Flush()
	}
	if err != nil {
		conn.Close()
		return nil, nil, false
	}
	return conn, brw.Reader, true
}
