package sshgw

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

// BenchmarkSFTPUpload writes 64 MiB per op through the gateway's sftp
// subsystem to the agent's SFTP server on the host (no sandbox): the
// gateway's own cost, crypto included.
func BenchmarkSFTPUpload(b *testing.B) {
	e := newTestEnv(b)
	c := e.client()
	sc, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	data := bytes.Repeat([]byte{7}, 64<<20)
	path := filepath.Join(b.TempDir(), "f")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f, err := sc.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkExecOutput reads 64 MiB per op of a process's stdout through
// an exec channel (the guest's process stream, then the SSH channel).
func BenchmarkExecOutput(b *testing.B) {
	e := newTestEnv(b)
	c := e.client()
	b.SetBytes(64 << 20)
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		if err := s.Start("head -c 67108864 /dev/zero"); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		if err := s.Wait(); err != nil || n != 64<<20 {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		s.Close()
	}
}
