package den_test

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	den "github.com/denhq/den/sdk/go"
)

// TestGuestMessagesAreBounded: a sandbox whose agent announces a message
// larger than MaxGuestMessage gets an error, not that much memory taken.
func TestGuestMessagesAreBounded(t *testing.T) {
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/connect+proto")
		w.WriteHeader(http.StatusOK)
		var env [5]byte
		binary.BigEndian.PutUint32(env[1:], den.MaxGuestMessage+1)
		w.Write(env[:])
		w.Write(make([]byte, 64<<10)) // the start of it; the client must stop reading
	}))
	t.Cleanup(hostile.Close)
	c, err := den.NewClient(den.Options{URL: hostile.URL, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Sandbox("sb").Exec(context.Background(), den.ExecOptions{Cmd: "true"})
	if err == nil || !strings.Contains(err.Error(), "larger than configured max") {
		t.Fatalf("exec against an agent sending an oversized message: %v, want a message-size error", err)
	}
}
