package sshgw

import (
	"fmt"
	"io"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/denhq/den/internal/guest"
)

// startSFTP serves the "sftp" subsystem: the guest agent's SFTP server
// (GET /sftp, see internal/guest/sftp.go) runs as the sandbox's default
// user, and the gateway pipes the channel to it both ways.
func (s *session) startSFTP() (bool, string) {
	if !s.claim() {
		return false, ""
	}
	stream, _, err := s.c.guest.upgrade(s.ctx, "/sftp", guest.SFTPUpgrade)
	if err != nil {
		return false, fmt.Sprintf("sftp: %v", err)
	}
	s.c.goChannel(func() {
		defer s.ch.Close()
		pipe(s.ch, stream)
		_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
	})
	return true, ""
}

// copyBufferSize is the buffer of each direction of a pipe: an SSH
// channel carries at most 32 KiB per packet, and bigger reads of the
// guest stream mean fewer, fuller packets.
const copyBufferSize = 256 << 10

// pipe copies between an SSH channel and a guest stream until both
// directions end, passing each end on as a half-close (EOF on the
// channel, CloseWrite on the stream), then closes the stream. The caller
// closes the channel.
func pipe(ch ssh.Channel, stream net.Conn) {
	defer stream.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := io.CopyBuffer(stream, ch, make([]byte, copyBufferSize))
		if err != nil {
			stream.Close()
			return
		}
		_ = closeWrite(stream)
	}()
	_, err := io.CopyBuffer(ch, stream, make([]byte, copyBufferSize))
	if err != nil {
		_ = ch.Close()
	} else {
		_ = ch.CloseWrite()
	}
	wg.Wait()
}
