package cli

import (
	"fmt"
	"io"
	"strings"

	den "github.com/denhq/den/sdk/go"
)

// layerProgress draws the progress of a pull or push. On a terminal it
// keeps one line per layer and redraws them in place; elsewhere (a log, a
// pipe) it prints a line each time a layer enters a new phase.
type layerProgress struct {
	w     io.Writer
	tty   bool
	order []string                // layers in the order of their first report
	last  map[string]den.Progress // by layer
	drawn int                     // lines drawn on the terminal so far
}

func newLayerProgress(w io.Writer, tty bool) *layerProgress {
	return &layerProgress{w: w, tty: tty, last: map[string]den.Progress{}}
}

// report takes one progress report of the server.
func (p *layerProgress) report(ev den.Progress) {
	prev, seen := p.last[ev.Detail]
	if !seen {
		p.order = append(p.order, ev.Detail)
	}
	p.last[ev.Detail] = ev
	if p.tty {
		p.redraw()
		return
	}
	if !seen || prev.Phase != ev.Phase {
		fmt.Fprintln(p.w, progressLine(ev))
	}
}

// redraw moves the cursor up over the lines drawn before and draws every
// layer's line again.
func (p *layerProgress) redraw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", p.drawn)
	}
	for _, k := range p.order {
		fmt.Fprintf(&b, "\r\033[K%s\n", progressLine(p.last[k]))
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}

// progressLine renders a report: the layer's short digest, the phase and
// the bytes done of the total.
func progressLine(ev den.Progress) string {
	what := ev.Detail
	if hex, ok := strings.CutPrefix(what, "sha256:"); ok && len(hex) > 12 {
		what = hex[:12]
	}
	line := fmt.Sprintf("%-12s  %s", what, ev.Phase)
	if what == "" {
		line = ev.Phase
	}
	switch {
	case ev.Total > 0:
		line += fmt.Sprintf("  %s/%s", bytesHuman(ev.Current), bytesHuman(ev.Total))
	case ev.Current > 0:
		line += "  " + bytesHuman(ev.Current)
	}
	return line
}

// progress returns the progress callback of a pull or push: nil with
// --json, which prints the final object only.
func (a *app) progress(errw io.Writer) func(den.Progress) {
	if a.json {
		return nil
	}
	return newLayerProgress(errw, isTerminal(errw)).report
}

// progressWriter counts the bytes written through it and shows the count
// on a terminal, at most once per MiB.
type progressWriter struct {
	w          io.Writer
	tty        io.Writer
	n, printed int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.n-p.printed >= 1<<20 {
		p.printed = p.n
		fmt.Fprintf(p.tty, "\rreceived %s", bytesHuman(p.n))
	}
	return n, err
}

func (p *progressWriter) done() {
	if p.printed > 0 {
		fmt.Fprintf(p.tty, "\rreceived %s\n", bytesHuman(p.n))
	}
}
