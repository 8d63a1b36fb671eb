package e2b

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBuildLog(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newBuildLog(func() time.Time { return now }, 10)
	fmt.Fprint(l, "one\r\ntwo\nthr")
	fmt.Fprint(l, "ee\n\nfour")
	l.add("error", "failed")
	l.flush()
	msgs := func(es []buildLogEntry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.Level+":"+e.Message)
		}
		return out
	}
	tests := []struct {
		name                    string
		offset, limit, minLevel int
		want                    []string
	}{
		{"all", 0, 100, 0, []string{"info:one", "info:two", "info:three", "info:", "info:four", "error:failed"}},
		{"offset", 4, 100, 0, []string{"info:four", "error:failed"}},
		{"limit", 1, 2, 0, []string{"info:two", "info:three"}},
		{"past the end", 6, 100, 0, []string{}},
		{"level", 0, 100, 3, []string{"error:failed"}},
		{"limit zero", 0, 0, 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, msgs(l.page(tt.offset, tt.limit, tt.minLevel))); diff != "" {
				t.Errorf("page (-want +got):\n%s", diff)
			}
		})
	}
	if got := l.page(0, 1, 0)[0].Timestamp; !got.Equal(now) {
		t.Errorf("timestamp %v", got)
	}
	if diff := cmp.Diff([]string{"info:four", "error:failed"}, msgs(l.tail(2))); diff != "" {
		t.Errorf("tail (-want +got):\n%s", diff)
	}
	for i := range 20 {
		fmt.Fprintf(l, "line %d\n", i)
	}
	got := msgs(l.page(0, 100, 0))
	if len(got) > 10 || got[len(got)-1] != "info:line 19" {
		t.Errorf("a full log keeps at most 10 lines, the newest: %v", got)
	}
	fmt.Fprint(l, strings.Repeat("x", maxLogLine+5))
	l.flush()
	tail := l.tail(2)
	if len(tail[0].Message) != maxLogLine || len(tail[1].Message) != 5 {
		t.Errorf("a long line is not split at %d bytes: %d, %d", maxLogLine, len(tail[0].Message), len(tail[1].Message))
	}
}
