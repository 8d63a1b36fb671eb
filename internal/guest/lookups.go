package guest

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// lookups caches what a process start looks up besides the user: where
// its command is in PATH, and whether its working directory exists. An
// entry is kept while fsGen says the directories it came from did not
// change. Only answers that let a start go on are kept, and a start that
// fails after using one looks again (Agent.prepare), so a stale entry can
// cost a retry but never a wrong result that the kernel would not also
// report.
type lookups struct {
	gen *fsGen // nil: no caching

	mu    sync.Mutex
	paths map[pathQuery]cachedPath
	dirs  map[string]uint64 // directory -> generation it was seen at
}

type pathQuery struct{ cmd, path string }

type cachedPath struct {
	found string
	gen   uint64
}

// uncached looks up without a cache, for starts that do not retry.
var uncached = &lookups{}

func newLookups(gen *fsGen) *lookups {
	return &lookups{gen: gen, paths: map[pathQuery]cachedPath{}, dirs: map[string]uint64{}}
}

// lookPath is the package's lookPath, cached for a command without a
// slash and a PATH of absolute directories. hit reports a cached answer.
func (l *lookups) lookPath(cmd, pathEnv, dir string) (found string, hit bool, err error) {
	gen, ok := l.gen.Current()
	q := pathQuery{cmd, pathEnv}
	cacheable := ok && !strings.Contains(cmd, "/") && absoluteList(pathEnv)
	if cacheable {
		l.mu.Lock()
		c, in := l.paths[q]
		l.mu.Unlock()
		if in && c.gen == gen {
			return c.found, true, nil
		}
		// Watch first: a change after the watch moves gen even if the
		// looks below miss it.
		for _, d := range filepath.SplitList(pathEnv) {
			if !l.gen.Watch(d, true) {
				cacheable = false
				break
			}
		}
	}
	found, err = lookPath(cmd, pathEnv, dir)
	if err == nil && cacheable {
		l.mu.Lock()
		l.paths[q] = cachedPath{found, gen}
		l.mu.Unlock()
	}
	return found, false, err
}

// isDir reports whether dir is a directory; hit reports a cached answer.
func (l *lookups) isDir(dir string) (yes, hit bool) {
	gen, ok := l.gen.Current()
	if ok {
		l.mu.Lock()
		g, in := l.dirs[dir]
		l.mu.Unlock()
		if in && g == gen {
			return true, true
		}
		ok = l.gen.Watch(dir, false)
	}
	fi, err := os.Stat(dir)
	yes = err == nil && fi.IsDir()
	if yes && ok {
		l.mu.Lock()
		l.dirs[dir] = gen
		l.mu.Unlock()
	}
	return yes, false
}

// forget drops every entry: a start that used one failed.
func (l *lookups) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.paths)
	clear(l.dirs)
}

// absoluteList reports whether every directory of a PATH value is
// absolute (an empty or relative one depends on the working directory).
func absoluteList(pathEnv string) bool {
	if pathEnv == "" {
		return false
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(d) {
			return false
		}
	}
	return true
}
