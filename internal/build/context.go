package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/denhq/den/internal/errdefs"
)

// newContextView returns the build context in dir as a view, with the
// .dockerignore patterns applied. An empty dir is an empty context.
func newContextView(dir string, patterns []string) (*view, error) {
	if dir == "" {
		return &view{}, nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "build context")
	}
	if !fi.IsDir() {
		return nil, errdefs.New(errdefs.InvalidArgument, "build context %s: not a directory", dir)
	}
	ig, err := newIgnorer(patterns)
	if err != nil {
		return nil, err
	}
	return &view{layers: []string{dir}, ignore: ig}, nil
}

// ignorer hides build-context paths that .dockerignore patterns exclude.
type ignorer struct {
	pm *patternmatcher.PatternMatcher
	// visible caches, per excluded directory, whether an exception
	// pattern ("!dir/keep") re-includes something under it.
	visible map[string]bool
}

// newIgnorer returns nil when there are no patterns.
func newIgnorer(patterns []string) (*ignorer, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, ".dockerignore")
	}
	return &ignorer{pm: pm, visible: map[string]bool{}}, nil
}

// hidden reports whether the context entry n is excluded. An excluded
// directory stays visible when something below it is re-included.
func (ig *ignorer) hidden(n *node) bool {
	if !ig.excluded(n.rel) {
		return false
	}
	if !n.isDir() || !ig.pm.Exclusions() {
		return true
	}
	return !ig.hasVisible(n.rel, n.host)
}

func (ig *ignorer) excluded(rel string) bool {
	m, err := ig.pm.MatchesOrParentMatches(filepath.FromSlash(rel))
	return err == nil && m
}

func (ig *ignorer) hasVisible(rel, host string) bool {
	if v, ok := ig.visible[rel]; ok {
		return v
	}
	found := false
	entries, _ := os.ReadDir(host)
	for _, e := range entries {
		crel := rel + "/" + e.Name()
		if !ig.excluded(crel) || (e.IsDir() && ig.hasVisible(crel, filepath.Join(host, e.Name()))) {
			found = true
			break
		}
	}
	ig.visible[rel] = found
	return found
}

// readIgnoreFile returns the patterns of <dockerfile>.dockerignore, else of
// <contextDir>/.dockerignore; none when neither exists.
func readIgnoreFile(contextDir, dockerfile string) ([]string, error) {
	candidates := []string{}
	if dockerfile != "" {
		candidates = append(candidates, dockerfile+".dockerignore")
	}
	if contextDir != "" {
		candidates = append(candidates, filepath.Join(contextDir, ".dockerignore"))
	}
	for _, p := range candidates {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ignore file: %w", err)
		}
		defer f.Close()
		patterns, err := ignorefile.ReadAll(f)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "read %s", filepath.Base(p))
		}
		return patterns, nil
	}
	return nil, nil
}
