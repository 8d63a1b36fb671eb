package server

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
)

// Builder builds images from a Dockerfile and a build context.
//
// Build blocks until the image is built and recorded under every tag, or
// fails. It must stop soon after ctx ends (the client left). It writes its
// human-readable output to req.Log, which is safe for concurrent use and
// never fails; the caller streams it line by line. The context directory is
// the caller's: Build must not keep it, as it is removed once Build
// returns. Errors are classified with errdefs: InvalidArgument for a
// Dockerfile mistake (naming its line), FailedPrecondition for a RUN step
// that failed.
type Builder interface {
	Build(ctx context.Context, req BuildRequest) (BuildResult, error)
}

// BuildRequest is one build.
type BuildRequest struct {
	// ContextDir is the unpacked build context, an absolute path.
	ContextDir string
	// Dockerfile is the Dockerfile's path inside the context; it exists.
	Dockerfile string
	// Tags are the names to record the image under.
	Tags      []string
	BuildArgs map[string]string
	// Target is the stage to build; empty means the last.
	Target string
	// NoCache builds every step afresh; Pull pulls the base images even
	// when they are stored.
	NoCache, Pull bool
	// Log receives the build's output.
	Log io.Writer
}

// BuildResult is a successful build.
type BuildResult struct {
	ImageID                      string
	Tags                         []string
	Steps, CachedSteps, RunSteps int
	Duration                     time.Duration
}

// defaultMaxBuildContext is Config.MaxBuildContext's default.
const defaultMaxBuildContext = 2 << 30

// buildParams are the query parameters of POST /v1/images/build.
const buildParams = "t, dockerfile, target, build_arg, no_cache or pull"

// buildImage unpacks the build context of the request body into a
// temporary directory, runs the Builder on it and streams its output as
// NDJSON {"log"} lines, then {"result"} or {"error"}. A client that
// disconnects cancels the build.
func (s *Server) buildImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "build images"); err != nil {
		return err
	}
	if s.cfg.Builder == nil {
		return errdefs.New(errdefs.Unsupported, "this server cannot build images: it was started without an image builder")
	}
	req, err := parseBuildQuery(r.URL.Query())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "den-build-")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("remove build context", "path", dir, "err", err)
		}
	}()
	if err := unpackBuildContext(r.Body, dir, s.cfg.MaxBuildContext); err != nil {
		return err
	}
	if err := checkDockerfile(dir, req.Dockerfile); err != nil {
		return err
	}
	req.ContextDir = dir
	st := s.newEventStream(w)
	lines := &logLines{st: st}
	req.Log = lines
	res, err := s.cfg.Builder.Build(r.Context(), req)
	lines.flush()
	var last rest.ImageEvent
	if err == nil {
		last.Result = &rest.BuildResult{
			ImageID: res.ImageID, Tags: res.Tags, Steps: res.Steps, CachedSteps: res.CachedSteps,
			RunSteps: res.RunSteps, DurationMS: res.Duration.Milliseconds(),
		}
		if last.Result.Tags == nil {
			last.Result.Tags = []string{}
		}
	}
	return s.endStream(r, st, last, err)
}

// parseBuildQuery reads the build's options from the query string.
func parseBuildQuery(q url.Values) (BuildRequest, error) {
	req := BuildRequest{Dockerfile: "Dockerfile", BuildArgs: map[string]string{}}
	for _, key := range slices.Sorted(maps.Keys(q)) {
		vals := q[key]
		var err error
		switch key {
		case "t":
			req.Tags, err = parseTags(vals)
		case "dockerfile":
			req.Dockerfile, err = parseDockerfilePath(vals[len(vals)-1])
		case "target":
			req.Target = vals[len(vals)-1]
		case "build_arg":
			err = parseBuildArgs(vals, req.BuildArgs)
		case "no_cache":
			req.NoCache, err = parseFlag(key, vals[len(vals)-1])
		case "pull":
			req.Pull, err = parseFlag(key, vals[len(vals)-1])
		default:
			err = errdefs.New(errdefs.InvalidArgument, "unknown query parameter %q: use %s", key, buildParams)
		}
		if err != nil {
			return BuildRequest{}, err
		}
	}
	return req, nil
}

func parseTags(vals []string) ([]string, error) {
	for _, t := range vals {
		if t == "" {
			return nil, errdefs.New(errdefs.InvalidArgument, "t must be an image name, got an empty one")
		}
	}
	return vals, nil
}

func parseDockerfilePath(p string) (string, error) {
	if p == "" {
		return "Dockerfile", nil
	}
	if !filepath.IsLocal(p) {
		return "", errdefs.New(errdefs.InvalidArgument, "dockerfile %q is invalid: give a relative path inside the build context", p)
	}
	return filepath.Clean(p), nil
}

func parseBuildArgs(vals []string, into map[string]string) error {
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return errdefs.New(errdefs.InvalidArgument, "build_arg %q is invalid: use KEY=VALUE", kv)
		}
		into[k] = v
	}
	return nil
}

func parseFlag(name, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errdefs.New(errdefs.InvalidArgument, "%s must be 1 or 0 (true or false), got %q", name, v)
	}
	return b, nil
}

// checkDockerfile requires the Dockerfile to be a regular file in the
// context directory.
func checkDockerfile(dir, name string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	fi, err := root.Stat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return errdefs.New(errdefs.InvalidArgument, "the build context has no Dockerfile at %q: add it, or name it with dockerfile=PATH", name)
	}
	return nil
}

// maxLogLine bounds one {"log"} line; longer output is split.
const maxLogLine = 64 << 10

// logLines is the Builder's Log: it sends every complete line of output
// as a {"log"} line of the stream.
type logLines struct {
	st  *eventStream
	mu  sync.Mutex
	buf []byte
}

// Write never fails: a client that left is noticed through the context.
func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.st.log(strings.TrimSuffix(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	for len(l.buf) >= maxLogLine {
		l.st.log(string(l.buf[:maxLogLine]))
		l.buf = l.buf[maxLogLine:]
	}
	l.buf = append([]byte(nil), l.buf...)
	return len(p), nil
}

// flush sends a last line that lacks its newline.
func (l *logLines) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.st.log(string(l.buf))
		l.buf = nil
	}
}
