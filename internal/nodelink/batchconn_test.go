package nodelink

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestBatchConnKeepsOrderAndFlushesOnClose(t *testing.T) {
	a, b := net.Pipe()
	bc := newBatchConn(a)
	got := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(b)
		got <- data
	}()
	var want bytes.Buffer
	for i := range 1000 {
		p := bytes.Repeat([]byte{byte(i)}, i%97+1)
		want.Write(p)
		if _, err := bc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if data := <-got; !bytes.Equal(data, want.Bytes()) {
		t.Fatalf("read %d bytes, want %d in order", len(data), want.Len())
	}
	if _, err := bc.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}
}

func TestBatchConnCloseDoesNotWaitForADeadPeer(t *testing.T) {
	a, _ := net.Pipe() // nobody reads the other end
	bc := newBatchConn(a)
	bc.Write([]byte("stuck"))
	done := make(chan struct{})
	go func() { bc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on a peer that reads nothing")
	}
}
