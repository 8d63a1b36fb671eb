// Package build builds images from Dockerfiles. A frontend turns a
// Dockerfile into a Plan (stages of typed steps); the executor runs the plan
// stage by stage: RUN steps in den sandboxes through a Runner, COPY and ADD
// by writing an overlayfs upper directory on the host, every filesystem
// change committed as a layer through Images. Steps that produce layers are
// cached in a persistent index keyed by what determines their result, so a
// rebuild of an unchanged Dockerfile and context runs nothing.
//
// The builder runs as root on the host: it reads layer directories directly
// (whiteouts, opaque directories, ownership) and writes layers with
// arbitrary ownership and device nodes.
package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// Config configures a Builder.
type Config struct {
	// Images is the image store. Required.
	Images Images
	// Runner runs RUN steps. Required.
	Runner Runner
	// WorkDir is scratch space for builds in progress, used by this
	// Builder alone: New empties it. The same file system as the image
	// store lets CommitLayer be cheap. Required.
	WorkDir string
	// CacheDir holds the persistent build-cache index; builders of several
	// processes may share it. Required.
	CacheDir string
	// Logger receives operational events; nil discards them.
	Logger *slog.Logger
	// HTTPClient downloads the URLs of ADD; nil means a client with a
	// 30-minute timeout.
	HTTPClient *http.Client
}

// Validate reports a missing required field.
func (c *Config) Validate() error {
	switch {
	case c.Images == nil:
		return errdefs.New(errdefs.InvalidArgument, "build config: Images is required")
	case c.Runner == nil:
		return errdefs.New(errdefs.InvalidArgument, "build config: Runner is required")
	case c.WorkDir == "":
		return errdefs.New(errdefs.InvalidArgument, "build config: WorkDir is required")
	case c.CacheDir == "":
		return errdefs.New(errdefs.InvalidArgument, "build config: CacheDir is required")
	}
	return nil
}

// Builder builds images. Its methods are safe for concurrent use; builds
// share only the cache index, whose entries are written atomically.
type Builder struct {
	images  Images
	runner  Runner
	workDir string
	cache   *cache
	log     *slog.Logger
	http    *http.Client
}

// New returns a Builder. It creates WorkDir and CacheDir and removes
// leftovers of builds a crash interrupted.
func New(cfg Config) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Builder{images: cfg.Images, runner: cfg.Runner, cache: &cache{dir: cfg.CacheDir},
		log: cfg.Logger, http: cfg.HTTPClient}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.http == nil {
		b.http = &http.Client{Timeout: 30 * time.Minute}
	}
	var err error
	if b.workDir, err = filepath.Abs(cfg.WorkDir); err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}
	for _, d := range []string{b.workDir, cfg.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("new builder: %w", err)
		}
	}
	if err := b.cleanWorkDir(); err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}
	if err := b.cache.removeStaleTemps(time.Now()); err != nil {
		return nil, fmt.Errorf("new builder: %w", err)
	}
	return b, nil
}

func (b *Builder) cleanWorkDir() error {
	entries, err := os.ReadDir(b.workDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		b.log.Info("removing leftover of interrupted build", "path", e.Name())
		if err := os.RemoveAll(filepath.Join(b.workDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Options are the parameters of one build.
type Options struct {
	// ContextDir is the build context; "" is an empty one.
	ContextDir string
	// Dockerfile is the Dockerfile's path, relative to ContextDir unless
	// absolute; default "Dockerfile". With DockerfileContent it only
	// names the file (in messages, and for <Dockerfile>.dockerignore).
	Dockerfile string
	// DockerfileContent, when not nil, is the Dockerfile itself.
	DockerfileContent []byte
	// Tags name the image; each is passed to Images.Create.
	Tags []string
	// BuildArgs are --build-arg values.
	BuildArgs map[string]string
	// Target is the stage to build; default the last one.
	Target string
	// NoCache ignores the build cache (results are still recorded in it).
	NoCache bool
	// Network is the network of RUN steps; "" means "none".
	Network string
	// Pull lets Images.Resolve pull images that are not in the store.
	Pull bool
	// Log receives the build log; nil discards it.
	Log io.Writer
}

// Result describes a finished build.
type Result struct {
	// ImageID is the ID Images.Create returned.
	ImageID string
	Tags    []string
	// Steps counts the steps shown in the log (FROM, RUN, COPY, ADD,
	// WORKDIR of the stages built); CachedSteps those served from the
	// cache; RunSteps the commands the Runner ran.
	Steps, CachedSteps, RunSteps int
	Duration                     time.Duration
}

// Build builds the Dockerfile of opts and records the image.
func (b *Builder) Build(ctx context.Context, opts Options) (*Result, error) {
	name, file, data, err := readDockerfile(opts)
	if err != nil {
		return nil, err
	}
	plan, err := ParseDockerfile(name, data)
	if err != nil {
		return nil, err
	}
	if plan.Ignore, err = readIgnoreFile(opts.ContextDir, file); err != nil {
		return nil, err
	}
	return b.BuildPlan(ctx, *plan, opts)
}

// readDockerfile returns the Dockerfile's display name, its path on disk
// ("" when unknown) and its content.
func readDockerfile(opts Options) (name, file string, data []byte, err error) {
	name = opts.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	file = name
	if !filepath.IsAbs(file) {
		if opts.ContextDir == "" {
			file = ""
		} else {
			file = filepath.Join(opts.ContextDir, name)
		}
	}
	if opts.DockerfileContent != nil {
		return name, file, opts.DockerfileContent, nil
	}
	if file == "" {
		return "", "", nil, errdefs.New(errdefs.InvalidArgument, "no Dockerfile: set ContextDir or DockerfileContent")
	}
	data, err = os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil, errdefs.New(errdefs.InvalidArgument, "%s not found in the build context", name)
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("read %s: %w", name, err)
	}
	return name, file, data, nil
}

// BuildPlan executes plan and records the image. opts.Dockerfile and
// opts.DockerfileContent are not used; opts.ContextDir is the source of
// COPY and ADD without --from.
func (b *Builder) BuildPlan(ctx context.Context, plan Plan, opts Options) (*Result, error) {
	start := time.Now()
	r := newRun(b, &plan, opts)
	defer r.close()
	b.log.Debug("build started", "stages", len(plan.Stages), "target", opts.Target)
	res, err := r.execute(ctx)
	if err != nil {
		b.log.Debug("build failed", "kind", errdefs.KindOf(err).Code())
		return nil, err
	}
	res.Duration = time.Since(start)
	b.log.Info("build finished", "image", res.ImageID, "steps", res.Steps,
		"cached", res.CachedSteps, "run", res.RunSteps, "duration", res.Duration)
	return res, nil
}

// undoStack holds cleanups, run last first.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u *undoStack) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}
