package daemon

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/denhq/den/internal/image"
)

// progressPrinter renders image build progress: one rewritten line on a
// terminal, a line per phase otherwise.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	phase string
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	f, ok := w.(*os.File)
	return &progressPrinter{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progressPrinter) print(ev image.Progress) {
	line := ev.Phase
	if ev.Total > 0 {
		line = fmt.Sprintf("%s %d/%d", ev.Phase, ev.Current, ev.Total)
	}
	if ev.Detail != "" {
		line += " " + ev.Detail
	}
	if p.tty {
		if len(line) > 100 {
			line = line[:100]
		}
		fmt.Fprintf(p.w, "\r\033[K  %s", line)
		return
	}
	if ev.Phase != p.phase {
		fmt.Fprintf(p.w, "  %s\n", line)
	}
	p.phase = ev.Phase
}

func (p *progressPrinter) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
