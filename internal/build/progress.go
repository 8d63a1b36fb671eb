package build

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress writes the human-readable build log, after Docker's plain
// progress output: every step that does work is a numbered vertex
//
//	#2 [builder 2/4] RUN make
//	#2 <output lines>
//	#2 DONE 1.2s
//
// It is safe for concurrent use; lines are never interleaved. Write errors
// are ignored: a client that went away must not fail the build.
type progress struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

// vertex starts a numbered vertex and returns its number.
func (p *progress) vertex(title string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	fmt.Fprintf(p.w, "#%d %s\n", p.n, title)
	return p.n
}

// vertices returns how many vertices were started.
func (p *progress) vertices() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// line writes one line of vertex id.
func (p *progress) line(id int, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "#%d %s\n", id, fmt.Sprintf(format, args...))
}

// note writes a line outside any vertex.
func (p *progress) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *progress) done(id int, d time.Duration) { p.line(id, "DONE %.1fs", d.Seconds()) }
func (p *progress) cached(id int)                { p.line(id, "CACHED") }
func (p *progress) fail(id int, err error)       { p.line(id, "ERROR: %v", err) }

// output returns a writer that prefixes each line written to it with the
// vertex number. Flush writes a last, unterminated line.
func (p *progress) output(id int) *vertexWriter {
	return &vertexWriter{p: p, prefix: []byte(fmt.Sprintf("#%d ", id))}
}

// vertexWriter is the output of one vertex; safe for concurrent use.
type vertexWriter struct {
	p      *progress
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

func (w *vertexWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes what is left of an unterminated last line.
func (w *vertexWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *vertexWriter) emit(line []byte) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	out := make([]byte, 0, len(w.prefix)+len(line)+1)
	out = append(append(append(out, w.prefix...), bytes.TrimSuffix(line, []byte("\r"))...), '\n')
	w.p.w.Write(out)
}
