package server

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// flushCounter is a ResponseWriter that counts its flushes and notes what
// had been written at each.
type flushCounter struct {
	*httptest.ResponseRecorder
	mu      sync.Mutex
	flushed []string // the body at each flush
}

func (f *flushCounter) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushed = append(f.flushed, f.Body.String())
}

func (f *flushCounter) flushes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.flushed...)
}

// Flushes asked for back to back leave as one; one followed by a pause is
// made within the delay, without waiting for the handler; what is pending
// when the handler returns is flushed then.
func TestDelayFlushes(t *testing.T) {
	const delay = 50 * time.Millisecond
	w := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	var midway []string
	h := delayFlushes(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rc := http.NewResponseController(w)
		for _, ev := range []string{"start.", "data.", "end."} {
			w.Write([]byte(ev))
			if err := rc.Flush(); err != nil {
				t.Error(err)
			}
		}
		time.Sleep(10 * delay)
		midway = w.(*delayedFlusher).ResponseWriter.(*flushCounter).flushes()
		w.Write([]byte("late."))
		rc.Flush()
	}), delay)
	req := httptest.NewRequest("GET", "/", nil)
	req.ProtoMajor = 2 // the pending flush is made when the handler returns (HTTP/1 leaves it to the server)
	h.ServeHTTP(w, req)
	if len(midway) != 1 || midway[0] != "start.data.end." {
		t.Fatalf("flushes before the pause = %q, want one of the three events together", midway)
	}
	if got := w.flushes(); len(got) != 2 || got[1] != "start.data.end.late." {
		t.Fatalf("flushes = %q, want the three events, then the last one when the handler returned", got)
	}
	time.Sleep(3 * delay)
	if got := w.flushes(); len(got) != 2 {
		t.Fatalf("a flush came after the handler returned: %q", got)
	}
}
