package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/denhq/den/api/envd/filesystem/filesystemconnect"
	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/api/envd/process/processconnect"
	"github.com/denhq/den/internal/driver"
)

// guestURL is the base URL of a guest agent on a DialGuest connection.
const guestURL = "http://guest"

// maxGuestMessage bounds one Connect message den reads from a guest
// agent. What a sandbox sends is untrusted: code that has replaced the
// agent on its socket must not make den buffer gigabytes. The agent
// sends process output in far smaller chunks.
const maxGuestMessage = 4 << 20

// guestProcessClient is the envd process client of a guest, bounded.
func guestProcessClient(hc connect.HTTPClient) processconnect.ProcessClient {
	return processconnect.NewProcessClient(hc, guestURL, connect.WithReadMaxBytes(maxGuestMessage))
}

// guestFilesystemClient is the envd filesystem client of a guest, bounded.
func guestFilesystemClient(hc connect.HTTPClient) filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(hc, guestURL, connect.WithReadMaxBytes(maxGuestMessage))
}

// mainTag is the envd tag of a sandbox's main process (the image's command).
const mainTag = "main"

// mainStartTimeout bounds the start of a sandbox's main process.
const mainStartTimeout = 30 * time.Second

// guestHTTP returns an HTTP client whose every connection is a DialGuest
// stream to sandbox id. Connections are not reused: nothing is left open
// once a call ends.
func (n *Node) guestHTTP(id string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return n.drv(id).DialGuest(ctx, id)
		},
		DisableKeepAlives: true,
	}}
}

// actAs makes req act as user in the guest (envd's Basic authorization;
// the guest reads a user with a group, "1000:1000", up to the last colon).
func actAs(h http.Header, user string) {
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
}

// startMain starts the image's command as sandbox id's main process, tagged
// "main", as the image's user in its working directory (/ without one),
// with the sandbox's environment; it returns once the process started and
// leaves it running. It is best effort: a command that cannot start (a
// missing binary) leaves the sandbox running and is logged.
func (n *Node) startMain(ctx context.Context, id string, img driver.Image) {
	if len(img.Command) == 0 {
		return
	}
	if err := n.startBackground(ctx, id, img); err != nil {
		n.log.Warn("image command did not start; the sandbox runs without it", "sandbox", id, "err", err)
		return
	}
	n.log.Info("image command started", "sandbox", id)
}

// startBackground starts img.Command and waits for its start event only.
// The call's context has no deadline, only a cancel on a timer: Connect
// sends a deadline to the guest, which kills the process when it passes.
func (n *Node) startBackground(ctx context.Context, id string, img driver.Image) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	timer := time.AfterFunc(mainStartTimeout, cancel)
	defer timer.Stop()
	cwd, user, tag := img.WorkingDir, img.User, mainTag
	if cwd == "" {
		cwd = "/"
	}
	if user == "" {
		user = "root"
	}
	req := connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: img.Command[0], Args: img.Command[1:], Cwd: &cwd},
		Tag:     &tag,
	})
	actAs(req.Header(), user)
	stream, err := guestProcessClient(n.guestHTTP(id)).Start(ctx, req)
	if err != nil {
		return fmt.Errorf("start image command: %w", err)
	}
	defer func() {
		cancel() // first: Close would otherwise read the stream to its end
		_ = stream.Close()
	}()
	for stream.Receive() {
		if stream.Msg().GetEvent().GetStart() != nil {
			return nil
		}
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("start image command: %w", err)
	}
	return fmt.Errorf("start image command: the stream ended before the start event")
}
