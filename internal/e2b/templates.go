package e2b

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/errdefs"
)

// E2B's template builds on den. The SDKs' Template.build is four calls:
// POST /v3/templates (a template ID and a build ID for a name), GET
// /templates/{id}/files/{hash} and a PUT of a tar of each COPY source to the
// link it answers, POST /v2/templates/{id}/builds/{buildID} with the steps,
// and GET .../status until the build is ready or failed. Templates keeps the
// records those calls create, stores the uploads and runs the builds in the
// background through a TemplateBuilder, which turns them into den images.
//
// Names: a template has a generated ID and an alias (its E2B name, unique per
// tenant); a successful build gets tags ("default" unless the request names
// others). The den image of a tag is TemplateImage(id, tag) =
// "e2b/<templateID>:<tag>": keyed by template ID, so two tenants' templates of
// the same alias never share an image, and never a name anyone can pick for
// an image of their own. Sandbox.create(templateID) resolves "alias",
// "alias:tag", "<id>" or "<id>:tag" among the caller's templates to that
// image, and falls back to a den image name ("base") otherwise.

// TemplateBuilder builds E2B templates into den images. The daemon implements
// it on top of den's Dockerfile build engine; tests use a fake. Its methods
// may be called concurrently, also for the same template.
type TemplateBuilder interface {
	// Build builds t and, once every step succeeded, records the result
	// as a den image under every name in t.Names, replacing any image that
	// had one of those names (a rebuild moves a tag); a failed build
	// records no name. It blocks until the build ends or ctx is done,
	// writing the build's output to t.Log as it goes. A failure should be,
	// or wrap, a *BuildStepError naming the step that failed; the error's
	// message is what the SDK user sees as the reason of the failure, so it
	// should say what went wrong (e.g. "exit status 3") without repeating
	// the step, which the facade adds.
	Build(ctx context.Context, t *TemplateBuild) error
	// Tag gives the den image named image the additional name, replacing
	// any other image of that name. NotFound if image does not exist.
	Tag(ctx context.Context, image, name string) error
	// Remove removes the den image name; the image stays while it has other
	// names. Removing a name that does not exist is not an error.
	Remove(ctx context.Context, name string) error
}

// TemplateBuild is one build of an E2B template, as the SDK described it.
//
// The steps run in order on top of the base (FromImage or FromTemplate),
// each in the state the previous ones left: E2B's builder starts them as
// the user DefaultTemplateUser in DefaultTemplateWorkdir (it adds that user,
// with a home directory and passwordless sudo, to every image that lacks
// it); a USER or WORKDIR step changes the user or directory of the steps
// after it and of the sandboxes started from the template, as in a
// Dockerfile. The image's environment, working directory and user are those
// the last steps left.
type TemplateBuild struct {
	// TemplateID and BuildID identify the build, for logs.
	TemplateID, BuildID string
	// Names are the den image names to record the result under, one per
	// tag: TemplateImage(TemplateID, tag).
	Names []string
	// FromImage is the base image as the SDK named it: an OCI reference
	// ("python:3.12", "e2bdev/base") or a den image name ("base"). Exactly
	// one of FromImage and FromTemplate is set.
	FromImage string
	// FromTemplate is the den image of the base template (the SDK's
	// fromTemplate, resolved by the facade like Sandbox.create's template).
	FromTemplate string
	// Steps are the SDK's steps, validated (see TemplateStep).
	Steps []TemplateStep
	// ContextDir holds the files of the COPY steps: those of step s are in
	// filepath.Join(ContextDir, s.FilesHash), at the paths they have
	// relative to the SDK's context directory. The directory is the
	// facade's; the builder only reads it.
	ContextDir string
	// StartCmd is run (as a background process) when a sandbox of the
	// template starts; ReadyCmd is polled until it exits 0 before the
	// build is considered ready. Both are shell command lines; empty when
	// unset.
	StartCmd, ReadyCmd string
	// Force asks for no layer cache at all; a step's Force for none from
	// that step on.
	Force bool
	// CPUCount and MemoryMB are the resources the template's sandboxes get
	// (and the builder may give its build sandboxes); 0 means den's
	// defaults.
	CPUCount, MemoryMB int
	// Log receives the build's output, best line by line. It is safe for
	// concurrent use; writes never fail.
	Log io.Writer
}

// E2B's step types.
const (
	StepRun     = "RUN"
	StepCopy    = "COPY"
	StepEnv     = "ENV"
	StepWorkdir = "WORKDIR"
	StepUser    = "USER"
)

// The user and working directory E2B's builder starts a template's steps
// as, and sandboxes of a template without USER and WORKDIR steps run as.
const (
	DefaultTemplateUser    = "user"
	DefaultTemplateWorkdir = "/home/user"
)

// TemplateStep is a step of a template build, verbatim from the SDK (the
// facade checks the argument counts and types before a build starts):
//
//	RUN     [command] or [command, user]: run the shell command line as
//	        user, or as the current user, in the current directory (E2B
//	        runs it with /bin/bash -l -c); a non-zero exit fails the build.
//	        The user applies to this step only.
//	COPY    [src, dest] or [src, dest, owner] or [src, dest, owner, mode]:
//	        src is a path relative to the SDK's context directory; its files
//	        are under ContextDir/FilesHash/src (the SDK resolved any glob to
//	        the files it uploaded, so use the part of src before the first
//	        glob character). A file src goes to dest (into dest when dest
//	        ends with "/"), a directory's contents into dest, creating
//	        parents. owner is "user" or "user:group" (default: the current
//	        user), mode an octal string ("0755") applied to what is copied
//	        ("" keeps the uploaded modes).
//	ENV     [name1, value1, name2, value2, ...]: set environment variables
//	        for the later steps and the template's sandboxes.
//	WORKDIR [path]: the working directory of the later steps and of the
//	        sandboxes, created if missing.
//	USER    [name]: the user of the later steps and of the sandboxes.
type TemplateStep struct {
	Type string
	Args []string
	// FilesHash names the uploaded files of a COPY step.
	FilesHash string
	// Force asks to rebuild this step and those after it without cache.
	Force bool
}

// String is the step as a Dockerfile-like line, for logs and error messages.
func (s TemplateStep) String() string {
	line := s.Type
	for _, a := range s.Args {
		if a == "" {
			continue
		}
		if strings.ContainsAny(a, " \t\n") && s.Type != StepRun {
			a = fmt.Sprintf("%q", a)
		}
		line += " " + a
	}
	const max = 120
	if len(line) > max {
		line = line[:max] + "..."
	}
	return line
}

// BuildStepError is the failure of one step of a template build.
type BuildStepError struct {
	// Step is the failed step: 0 for the base (pulling or preparing
	// FromImage/FromTemplate), 1 to len(Steps) for Steps[Step-1],
	// len(Steps)+1 for the finish (StartCmd, ReadyCmd, recording the image).
	Step int
	Err  error
}

func (e *BuildStepError) Error() string { return fmt.Sprintf("step %d: %v", e.Step, e.Err) }
func (e *BuildStepError) Unwrap() error { return e.Err }

// TemplateImage is the den image name of tag of template id.
func TemplateImage(id, tag string) string { return templateImagePrefix + id + ":" + tag }

// templateImagePrefix starts the den image names of templates; names with
// it are never resolved as plain den images for the E2B API.
const templateImagePrefix = "e2b/"

// TemplatesConfig configures the template store.
type TemplatesConfig struct {
	// Dir holds the template records (templates.json) and the uploaded
	// files (files/<templateID>/<hash>/). Created if missing.
	Dir string
	// Builder builds the templates. Required.
	Builder TemplateBuilder
	// BaseURL is the facade's own URL (E2B_API_URL), the base of the upload
	// links it hands out; empty means the scheme and Host of the request
	// that asks for the link.
	BaseURL string
	// MaxUploadBytes bounds one upload's body (default 1 GiB); the files it
	// unpacks to are bounded to 4 times that.
	MaxUploadBytes int64
	// BuildTimeout bounds one build (default 1 hour).
	BuildTimeout time.Duration
	// LogLines is how many log lines each build keeps in memory for its
	// status (default 10000; older ones are dropped).
	LogLines int
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of TemplatesConfig.
const (
	DefaultMaxUploadBytes = 1 << 30
	DefaultBuildTimeout   = time.Hour
	DefaultLogLines       = 10000
)

func (c *TemplatesConfig) setDefaults() error {
	if c.Dir == "" {
		return errors.New("templates: Dir is required")
	}
	if c.Builder == nil {
		return errors.New("templates: Builder is required")
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if c.BuildTimeout <= 0 {
		c.BuildTimeout = DefaultBuildTimeout
	}
	if c.LogLines <= 0 {
		c.LogLines = DefaultLogLines
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Templates is the tenants' E2B templates: their records, uploaded files
// and running builds. Open it, pass it in Config.Templates, and Close it
// after the API stops serving. Its methods are safe for concurrent use.
type Templates struct {
	cfg     TemplatesConfig
	log     *slog.Logger
	signKey []byte // signs upload links; new per process

	// ctx is cancelled by Close; every build goroutine runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	templates map[string]*templateRecord // by ID
	// running holds the builds started by this process, by build ID: the
	// running ones and the last maxFinishedLogs finished ones (finished,
	// oldest first), for their logs.
	running  map[string]*runningBuild
	finished []string
}

// maxFinishedLogs bounds the finished builds whose logs stay in memory.
const maxFinishedLogs = 100

// runningBuild is the in-memory state of a build that runs or ran in this
// process: its log and a way to stop it.
type runningBuild struct {
	log    *buildLog
	cancel context.CancelFunc // nil once finished
}

// OpenTemplates loads the records in cfg.Dir. Builds that were running when
// den stopped are marked failed: they cannot be resumed.
func OpenTemplates(cfg TemplatesConfig) (*Templates, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "files"), 0o700); err != nil {
		return nil, fmt.Errorf("create template dir %s: %w", cfg.Dir, err)
	}
	key, err := randomBytes(32)
	if err != nil {
		return nil, err
	}
	t := &Templates{cfg: cfg, log: cfg.Logger, signKey: key, running: map[string]*runningBuild{}}
	if t.templates, err = loadTemplates(t.recordsPath()); err != nil {
		return nil, err
	}
	if err := t.recover(); err != nil {
		return nil, err
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// recover fails the builds a previous process left running and removes
// unfinished uploads.
func (t *Templates) recover() error {
	changed := false
	now := t.cfg.Now().UTC()
	for _, tpl := range t.templates {
		for _, b := range tpl.Builds {
			if b.Status == buildBuilding {
				b.fail(now, "den restarted during the build; start it again", "")
				changed = true
			}
		}
		t.removePartialUploads(tpl.ID)
	}
	t.removeOrphanFiles()
	if !changed {
		return nil
	}
	return t.saveLocked()
}

// removeOrphanFiles removes the files directories of templates that are
// gone (a delete that failed to remove them).
func (t *Templates) removeOrphanFiles() {
	entries, err := os.ReadDir(filepath.Join(t.cfg.Dir, "files"))
	if err != nil {
		t.log.Warn("list template files", "err", err)
		return
	}
	for _, e := range entries {
		if _, ok := t.templates[e.Name()]; !ok {
			t.removeFiles(e.Name())
		}
	}
}

// Close stops the running builds and waits for them to end. The API must
// no longer serve requests.
func (t *Templates) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}

func (t *Templates) recordsPath() string { return filepath.Join(t.cfg.Dir, "templates.json") }

// filesDir is the directory of the uploads of template id (the builds'
// ContextDir).
func (t *Templates) filesDir(id string) string { return filepath.Join(t.cfg.Dir, "files", id) }

// templates is the facade's template store, or an Unsupported error when
// none is configured.
func (a *api) templates() (*Templates, error) {
	if a.cfg.Templates == nil {
		return nil, errdefs.New(errdefs.Unsupported, "template builds are not enabled on this den server")
	}
	return a.cfg.Templates, nil
}
