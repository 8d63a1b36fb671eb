package e2b

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxLogLine bounds one log entry; a longer line is split.
const maxLogLine = 16 << 10

// buildLog is the log of one build, kept in memory for the status calls:
// at most max entries, the oldest dropped first. It is an io.Writer that
// turns lines into info entries; its methods are safe for concurrent use.
type buildLog struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	entries []buildLogEntry
	partial []byte // the last, unterminated line written
}

func newBuildLog(now func() time.Time, max int) *buildLog {
	return &buildLog{now: now, max: max}
}

// Write adds each complete line of p as an info entry. It never fails.
func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.addLocked("info", string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	for len(l.partial) >= maxLogLine {
		l.addLocked("info", string(l.partial[:maxLogLine]))
		l.partial = l.partial[maxLogLine:]
	}
	l.partial = slices.Clip(l.partial)
	return len(p), nil
}

// add appends an entry of the level.
func (l *buildLog) add(level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	l.addLocked(level, msg)
}

// flush adds the unterminated last line written, if any.
func (l *buildLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *buildLog) flushLocked() {
	if len(l.partial) > 0 {
		l.addLocked("info", string(l.partial))
		l.partial = nil
	}
}

// addLocked appends an entry, dropping the oldest tenth of the entries
// when full. Preconditions: l.mu is held.
func (l *buildLog) addLocked(level, msg string) {
	msg = strings.TrimSuffix(msg, "\r")
	if len(l.entries) >= l.max {
		l.entries = slices.Delete(l.entries, 0, max(l.max/10, 1))
	}
	l.entries = append(l.entries, buildLogEntry{Timestamp: l.now().UTC(), Level: level, Message: msg})
}

// page returns up to limit entries of at least minLevel, from the offset-th
// of those. Offsets count the entries kept: once the oldest are dropped,
// an offset skips fewer than it did.
func (l *buildLog) page(offset, limit, minLevel int) []buildLogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []buildLogEntry{}
	seen := 0
	for _, e := range l.entries {
		if len(out) == limit {
			break
		}
		if slices.Index(logLevels, e.Level) < minLevel {
			continue
		}
		if seen >= offset {
			out = append(out, e)
		}
		seen++
	}
	return out
}

// tail returns the last n entries.
func (l *buildLog) tail(n int) []buildLogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries[max(len(l.entries)-n, 0):])
}
