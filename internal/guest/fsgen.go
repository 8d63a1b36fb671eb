package guest

import (
	"errors"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsGen tells the agent's lookup caches (users, executables, working
// directories) whether the directories their answers came from may have
// changed, without a stat of each (under gVisor each stat is a trip out of
// the sentry, a few hundred microseconds here). It is one inotify
// instance: a cache fills an entry by taking gen, watching the directories
// the answer depends on, then looking; the entry is good while gen has
// not moved. Any event on any watched directory moves gen, so a change
// costs every cache one more look.
//
// What inotify cannot see (a directory above a watched one renamed, a
// change made outside the sandbox) leaves an entry stale; its users check
// what a stale entry would break and look again (see Agent.prepare).
type fsGen struct {
	mu      sync.Mutex
	fd      int // the inotify instance; -1 when there is none
	gen     uint64
	watched map[string]int32   // directory -> watch descriptor
	byWD    map[int32][]string // one inode may be watched under several paths
	buf     []byte
}

// watchMask is every change to a directory's entries or to the directory.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// maxWatches bounds the directories watched; past it nothing is cached.
const maxWatches = 256

// newFSGen returns an fsGen; without inotify its Current is never stable,
// so caches never hit.
func newFSGen() *fsGen {
	g := &fsGen{fd: -1, buf: make([]byte, 64<<10)} // -1: no descriptor to close yet
	g.resetLocked()
	return g
}

// resetLocked starts over with a new inotify instance and no watches.
func (g *fsGen) resetLocked() {
	g.closeLocked()
	g.watched, g.byWD = map[string]int32{}, map[int32][]string{}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		fd = -1
	}
	g.fd = fd
}

// Current drains the pending events and returns the generation: equal to
// an earlier one when no watched directory changed in between. ok is
// false when nothing can be cached (no inotify).
func (g *fsGen) Current() (gen uint64, ok bool) {
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drainLocked()
	return g.gen, g.fd >= 0
}

// drainLocked reads the pending events. A watch the kernel removed (its
// directory deleted) is forgotten, so a directory made again at its path
// is watched again; after an overflow, which may have lost such news, it
// starts over.
func (g *fsGen) drainLocked() {
	for g.fd >= 0 {
		n, err := unix.Read(g.fd, g.buf)
		if n > 0 {
			g.gen++
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&g.buf[off]))
				switch {
				case ev.Mask&unix.IN_Q_OVERFLOW != 0:
					g.resetLocked()
					return
				case ev.Mask&unix.IN_IGNORED != 0:
					for _, dir := range g.byWD[ev.Wd] {
						delete(g.watched, dir)
					}
					delete(g.byWD, ev.Wd)
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			g.closeLocked() // a broken instance: stop caching
		}
		return
	}
}

// Watch watches the directories an answer about dir depends on: every
// ancestor of dir that exists (a rename or a new symbolic link on the way
// changes one of them) and, with self, dir itself (its entries). It
// reports false when it cannot, and the caller must not cache what it
// looks up next.
func (g *fsGen) Watch(dir string, self bool) bool {
	if g == nil || !filepath.IsAbs(dir) {
		return false
	}
	dir = filepath.Clean(dir)
	var chain []string // "/" first
	for d := dir; ; d = filepath.Dir(d) {
		if d != dir || self {
			chain = append(chain, d)
		}
		if d == "/" {
			break
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(chain) - 1; i >= 0; i-- {
		switch err := g.addLocked(chain[i]); {
		case err == nil:
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
			return true // its parent's watch sees it appear
		default:
			return false
		}
	}
	return true
}

func (g *fsGen) addLocked(dir string) error {
	if g.fd < 0 {
		return unix.EBADF
	}
	if _, ok := g.watched[dir]; ok {
		return nil
	}
	if len(g.watched) >= maxWatches {
		return unix.ENOSPC
	}
	wd, err := unix.InotifyAddWatch(g.fd, dir, watchMask|unix.IN_ONLYDIR)
	if err != nil {
		return err
	}
	g.watched[dir] = int32(wd)
	g.byWD[int32(wd)] = append(g.byWD[int32(wd)], dir)
	return nil
}

// Close releases the inotify instance; the caches then never hit.
func (g *fsGen) Close() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeLocked()
}

func (g *fsGen) closeLocked() {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}
