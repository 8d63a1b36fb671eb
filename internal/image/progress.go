package image

import (
	"io"
	"time"
)

// Rate of byte-count progress events: one per meterBytes or meterInterval,
// whichever comes first, plus one at the start and one at the end.
const (
	meterBytes    = 1 << 20
	meterInterval = 100 * time.Millisecond
)

// meter turns a byte count into rate-limited progress events of one phase
// and detail (a progress bar).
type meter struct {
	progress      func(Progress)
	phase, detail string
	total         int64

	n, sentN int64
	sentAt   time.Time
}

// start reports the count so far (a resumed download starts above 0).
func (m *meter) start(n int64) {
	m.n = n
	m.emit()
}

func (m *meter) add(n int) {
	m.n += int64(n)
	if m.n-m.sentN >= meterBytes || time.Since(m.sentAt) >= meterInterval {
		m.emit()
	}
}

// done reports the final count, unless it was just reported.
func (m *meter) done() {
	if m.sentAt.IsZero() || m.n != m.sentN {
		m.emit()
	}
}

func (m *meter) emit() {
	m.sentN, m.sentAt = m.n, time.Now()
	m.progress(Progress{Phase: m.phase, Current: m.n, Total: m.total, Detail: m.detail})
}

// meteredReader counts what is read through it on a meter.
type meteredReader struct {
	r io.Reader
	m *meter
}

func (r *meteredReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.m.add(n)
	return n, err
}
