package server

import (
	"testing"
	"time"
)

// keepOnly drops what the tracker holds of sandboxes that no longer run,
// but not while a request to one is still open.
func TestActivityKeepOnly(t *testing.T) {
	a := newActivity()
	now := time.Unix(1000, 0)
	a.touch("running", now)
	a.touch("gone", now)
	a.begin("gone-but-open", now)
	a.keepOnly(func(id string) bool { return id == "running" })
	for id, want := range map[string]bool{"running": true, "gone": false, "gone-but-open": true} {
		if _, _, ok := a.peek(id); ok != want {
			t.Errorf("after keepOnly, %s held = %v, want %v", id, ok, want)
		}
	}
}
