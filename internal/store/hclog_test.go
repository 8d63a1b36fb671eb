package store

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapterLevels(t *testing.T) {
	var buf bytes.Buffer
	a := newHclogAdapter(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	l := a.Named("snap").With("k", "v")
	l.Info("chatty")
	l.Debug("chattier")
	l.Warn("heartbeat timeout reached, starting election")
	l.Warn("disk slow", "ms", 9)
	l.Log(hclog.Error, "broken")

	got := buf.String()
	for _, want := range []string{`level=WARN msg="disk slow" component=raft.snap k=v ms=9`, `level=ERROR msg=broken component=raft.snap k=v`} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	for _, dropped := range []string{"chatty", "chattier", "heartbeat"} {
		if strings.Contains(got, dropped) {
			t.Errorf("log has %q, which should be dropped:\n%s", dropped, got)
		}
	}
}
