package gvisor

import (
	"encoding/json"
	"testing"
	"time"
)

// TestStateWaitsForPendingWrite checks a den.json read and a den.json
// write made while a background write of that file is in flight wait for
// it: the read sees the new state, and the later write is not undone.
func TestStateWaitsForPendingWrite(t *testing.T) {
	p := paths{dir: t.TempDir()}
	if _, err := writeState(p, sandboxState{Phase: "before"}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	stateWrites.start(p.stateFile(), func() {
		<-release
		data, _ := json.Marshal(sandboxState{Phase: "claimed"})
		if err := writeStateData(p, data); err != nil {
			t.Error(err)
		}
	})
	read := make(chan string, 1)
	go func() {
		st, err := readState(p)
		if err != nil {
			t.Error(err)
		}
		read <- st.Phase
	}()
	// Give the reader time to reach the file before the write lands: a
	// reader that does not wait reads "before".
	time.Sleep(50 * time.Millisecond)
	close(release)
	if got := <-read; got != "claimed" {
		t.Fatalf("read during a pending write saw phase %q, want the written %q", got, "claimed")
	}

	release = make(chan struct{})
	stateWrites.start(p.stateFile(), func() {
		<-release
		data, _ := json.Marshal(sandboxState{Phase: "claimed again"})
		_ = writeStateData(p, data)
	})
	wrote := make(chan error, 1)
	go func() { _, err := writeState(p, sandboxState{Phase: "suspended"}); wrote <- err }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if st, err := readState(p); err != nil || st.Phase != "suspended" {
		t.Fatalf("after a write that followed a pending one: phase %q, %v; want %q", st.Phase, err, "suspended")
	}
}
