package den

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/denhq/den/api/rest"
)

// BuildOptions configure Images.Build.
type BuildOptions struct {
	// ContextDir is the directory whose files COPY and ADD see; required.
	// Files its .dockerignore names are left out, as by `docker build`.
	ContextDir string
	// Dockerfile is the Dockerfile's path: relative to ContextDir, or
	// absolute. "" means Dockerfile in ContextDir. A Dockerfile outside
	// ContextDir is sent along with the context.
	Dockerfile string
	// Tags are the names to store the image under.
	Tags []string
	// BuildArgs set the Dockerfile's ARGs.
	BuildArgs map[string]string
	// Target is the stage to build; "" means the last.
	Target string
	// NoCache builds every step afresh; Pull pulls base images even when
	// the server has them.
	NoCache, Pull bool
	// Log receives the build's output, line by line, as it comes; nil
	// discards it.
	Log io.Writer
}

// Build sends the build context to the server and has it build the image
// its Dockerfile describes. The context is streamed as it is read, never
// held in memory whole. Canceling ctx cancels the build. It needs an admin
// key; a failed step is an *APIError whose message names the Dockerfile
// line.
func (im *Images) Build(ctx context.Context, opts BuildOptions) (*rest.BuildResult, error) {
	res, err := im.build(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return res, nil
}

func (im *Images) build(ctx context.Context, opts BuildOptions) (*rest.BuildResult, error) {
	bc, err := newBuildContext(opts.ContextDir, opts.Dockerfile)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := bc.write(pw)
		pw.CloseWithError(err)
		written <- err
	}()
	req, err := im.c.newRequest(ctx, http.MethodPost, "/v1/images/build", buildQuery(opts, bc.dockerfile), pr)
	if err != nil {
		pr.Close()
		<-written
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	var res *rest.BuildResult
	err = im.c.stream(req, func(ev rest.ImageEvent) bool {
		if ev.Log != nil && opts.Log != nil {
			fmt.Fprintln(opts.Log, *ev.Log)
		}
		res = ev.Result
		return res != nil
	})
	// The server may answer before it reads the whole context (a refusal).
	pr.CloseWithError(errAnswered)
	if werr := <-written; werr != nil && !errors.Is(werr, errAnswered) && !errors.Is(werr, io.ErrClosedPipe) {
		return nil, fmt.Errorf("send build context %s: %w", bc.dir, werr)
	}
	return res, err
}

// errAnswered stops sending the build context once the server answered.
var errAnswered = errors.New("the server answered")

func buildQuery(opts BuildOptions, dockerfile string) url.Values {
	q := url.Values{}
	for _, t := range opts.Tags {
		q.Add("t", t)
	}
	if dockerfile != "Dockerfile" {
		q.Set("dockerfile", dockerfile)
	}
	if opts.Target != "" {
		q.Set("target", opts.Target)
	}
	for k, v := range opts.BuildArgs {
		q.Add("build_arg", k+"="+v)
	}
	if opts.NoCache {
		q.Set("no_cache", "1")
	}
	if opts.Pull {
		q.Set("pull", "1")
	}
	return q
}

// buildContext is a build context directory about to be sent as a tar.
type buildContext struct {
	dir string
	// dockerfile is the Dockerfile's slash-separated path in the tar.
	dockerfile string
	// outside is the path of a Dockerfile outside dir, sent as dockerfile;
	// "" when it is inside.
	outside string
	ignore  *patternmatcher.PatternMatcher // nil: no .dockerignore
}

func newBuildContext(dir, dockerfile string) (*buildContext, error) {
	if dir == "" {
		return nil, errors.New("no build context: set BuildOptions.ContextDir")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The walk does not follow links, a linked directory included.
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory", dir)
	}
	bc := &buildContext{dir: dir, dockerfile: "Dockerfile"}
	if dockerfile != "" {
		if err := bc.placeDockerfile(dockerfile); err != nil {
			return nil, err
		}
	}
	if bc.ignore, err = readDockerignore(dir); err != nil {
		return nil, err
	}
	return bc, nil
}

// placeDockerfile finds the Dockerfile's path in the tar: its path below
// dir, or a fresh name for a Dockerfile outside dir.
func (bc *buildContext) placeDockerfile(dockerfile string) error {
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(bc.dir, dockerfile)
	}
	dockerfile, err := filepath.EvalSymlinks(dockerfile)
	if err != nil {
		return fmt.Errorf("dockerfile: %w", err)
	}
	if rel, err := filepath.Rel(bc.dir, dockerfile); err == nil && filepath.IsLocal(rel) {
		bc.dockerfile = filepath.ToSlash(rel)
		return nil
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	bc.outside = dockerfile
	bc.dockerfile = ".den-dockerfile-" + hex.EncodeToString(b)
	return nil
}

func readDockerignore(dir string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	return pm, nil
}

// write writes the context to w as a tar: every file, directory and
// symbolic link that .dockerignore does not exclude, and always the
// Dockerfile and .dockerignore (the server needs them).
func (bc *buildContext) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	parents := map[string]patternmatcher.MatchInfo{}
	err := filepath.WalkDir(bc.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(bc.dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skip, err := bc.ignored(rel, d, parents); err != nil || skip {
			return err
		}
		return addToTar(tw, p, rel, d)
	})
	if err != nil {
		return err
	}
	if bc.outside != "" {
		fi, err := os.Stat(bc.outside)
		if err != nil {
			return err
		}
		if err := addFile(tw, bc.outside, bc.dockerfile, fi); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ignored reports whether .dockerignore leaves rel out; for a directory,
// fs.SkipDir when nothing below it can be let back in by a "!" pattern.
// It records the match of directories in parents for their entries.
func (bc *buildContext) ignored(rel string, d fs.DirEntry, parents map[string]patternmatcher.MatchInfo) (bool, error) {
	if bc.ignore == nil || rel == bc.dockerfile || rel == ".dockerignore" {
		return false, nil
	}
	parent := filepath.ToSlash(filepath.Dir(rel))
	skip, info, err := bc.ignore.MatchesUsingParentResults(rel, parents[parent])
	if err != nil {
		return false, fmt.Errorf(".dockerignore: %w", err)
	}
	if d.IsDir() {
		parents[rel] = info
	}
	if !skip || !d.IsDir() {
		return skip, nil
	}
	// A "!" pattern may let something below an excluded directory back in.
	prefix := rel + "/"
	for _, pat := range bc.ignore.Patterns() {
		if pat.Exclusion() && strings.HasPrefix(pat.String()+"/", prefix) {
			return true, nil
		}
	}
	if strings.HasPrefix(bc.dockerfile, prefix) || strings.HasPrefix(".dockerignore", prefix) {
		return true, nil
	}
	return true, fs.SkipDir
}

// addToTar writes one walked entry: a directory, regular file or symbolic
// link. Other kinds (sockets, devices) are left out, as docker does.
func addToTar(tw *tar.Writer, path, name string, d fs.DirEntry) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir():
		return writeHeader(tw, fi, name+"/", "")
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		return writeHeader(tw, fi, name, target)
	case fi.Mode().IsRegular():
		return addFile(tw, path, name, fi)
	}
	return nil
}

func addFile(tw *tar.Writer, path, name string, fi fs.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeHeader(tw, fi, name, ""); err != nil {
		return err
	}
	// CopyN: a file that grows while it is sent must not overrun its header.
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// writeHeader writes a header without owner: the build decides ownership.
func writeHeader(tw *tar.Writer, fi fs.FileInfo, name, link string) error {
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = name
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	return tw.WriteHeader(hdr)
}
