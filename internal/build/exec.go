package build

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/denhq/den/internal/errdefs"
)

// run is one build in progress. It is used by one goroutine.
type run struct {
	b    *Builder
	plan *Plan
	opts Options
	log  *progress
	lex  *shell.Lex
	undo undoStack
	// dir is this build's scratch directory under the builder's WorkDir.
	dir string
	// context is the build context.
	context *view
	// meta are the values of the global ARGs (and predefined ones).
	meta map[string]string
	// declared are the ARG names the build declared, to warn about unused
	// build args.
	declared map[string]bool
	stages   []*stageState
	target   *stageState
	images   map[string]Base
	dirs     map[string]string
	// current is the log vertex of the step being executed, 0 if none.
	current int
	res     Result
}

func newRun(b *Builder, plan *Plan, opts Options) *run {
	esc := plan.Escape
	if esc == 0 {
		esc = '\\'
	}
	if opts.Network == "" {
		opts.Network = "none"
	}
	return &run{b: b, plan: plan, opts: opts, log: newProgress(opts.Log), lex: shell.NewLex(esc),
		declared: map[string]bool{}, images: map[string]Base{}, dirs: map[string]string{}}
}

// close releases leases and removes scratch files; safe on a half-built run.
func (r *run) close() { r.undo.run() }

// execute runs the build as a list of named steps.
func (r *run) execute(ctx context.Context) (*Result, error) {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"evaluate global args", r.evalMetaArgs},
		{"select stages", r.selectStages},
		{"open build context", r.openContext},
		{"make scratch directory", r.makeScratch},
		{"build stages", r.buildStages},
		{"export image", r.export},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.fn(ctx); err != nil {
			r.b.log.Debug("build step failed", "step", s.name)
			return nil, err
		}
	}
	r.res.Tags = slices.Clone(r.opts.Tags)
	return &r.res, nil
}

// planError locates err at the start of the plan's file.
func (r *run) planError(err error) error {
	return &StepError{File: r.plan.File, Err: classify(err, errdefs.InvalidArgument)}
}

// predefinedArgs are build args usable without an ARG: the proxy settings,
// passed to RUN but kept out of the cache key and the image history.
var predefinedArgs = []string{
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
	"FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
}

// platformArgs are the automatic global ARGs of BuildKit; den builds for
// the host only.
func platformArgs() map[string]string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	return map[string]string{
		"BUILDPLATFORM": p, "BUILDOS": runtime.GOOS, "BUILDARCH": runtime.GOARCH, "BUILDVARIANT": "",
		"TARGETPLATFORM": p, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "TARGETVARIANT": "",
	}
}

// evalMetaArgs computes the global ARGs: a build arg wins over the
// default, which may use the ARGs before it.
func (r *run) evalMetaArgs(context.Context) error {
	r.meta = platformArgs()
	for k := range r.meta {
		r.declared[k] = true
	}
	for _, a := range r.plan.Args {
		r.declared[a.Name] = true
		if v, ok := r.opts.BuildArgs[a.Name]; ok {
			r.meta[a.Name] = v
			continue
		}
		if !a.HasDefault {
			delete(r.meta, a.Name)
			continue
		}
		v, err := r.lex.ProcessWordWithMap(a.Default, r.meta)
		if err != nil {
			return r.planError(fmt.Errorf("ARG %s: %w", a.Name, err))
		}
		r.meta[a.Name] = v
	}
	return nil
}

// stageState is a stage being built: its filesystem (layers), image
// configuration and build-time variables.
type stageState struct {
	index int
	plan  *Stage
	// display is the name in the log ("builder", "stage-1", "" for the
	// only, unnamed stage).
	display string
	// base is the FROM reference after substitution; baseStage the index
	// of the stage it names, or -1.
	base      string
	baseStage int
	// deps are the stages it needs (FROM and COPY --from); fromStages
	// maps the --from values that name a stage to its index.
	deps       []int
	fromStages map[string]int
	needed     bool

	layers  []string
	config  ImageConfig
	history []History
	// env is the environment for substitution and RUN: the image's Env
	// plus the values of the stage's ARGs.
	env []string
	// args are the ARGs declared in the stage, in order, with values.
	args []argValue
	// key is the cache key of the filesystem so far.
	key string
	// stamp is the creation time of the last layer, used for the history
	// of instructions without layers so that rebuilding from cache gives
	// the same image.
	stamp  time.Time
	cmdSet bool
	step   int
	total  int
}

type argValue struct {
	name, value string
	set         bool
}

// title numbers the next vertex of the stage: "[builder 2/4] RUN make".
func (st *stageState) title(text string) string {
	st.step++
	if st.display == "" {
		return fmt.Sprintf("[%d/%d] %s", st.step, st.total, text)
	}
	return fmt.Sprintf("[%s %d/%d] %s", st.display, st.step, st.total, text)
}

// addLayer records a layer a step made; stepKey is the step's cache key.
func (st *stageState) addLayer(stepKey, diffID, createdBy string, created time.Time) {
	st.layers = append(st.layers, diffID)
	st.history = append(st.history, History{CreatedBy: createdBy, Comment: historyComment, Created: created})
	st.key = keyOf(cacheVersion, "layer", stepKey, diffID)
	st.stamp = created
}

// addHistory records an instruction that changed only the configuration.
func (st *stageState) addHistory(createdBy string) {
	st.history = append(st.history, History{CreatedBy: createdBy, Comment: historyComment, EmptyLayer: true, Created: st.stamp})
}

const historyComment = "den build"

// selectStages resolves the FROM references, finds the target and marks
// the stages it depends on.
func (r *run) selectStages(context.Context) error {
	if len(r.plan.Stages) == 0 {
		return r.planError(fmt.Errorf("no stages to build"))
	}
	names := map[string]int{}
	for i := range r.plan.Stages {
		st, err := r.newStage(i, names)
		if err != nil {
			return err
		}
		r.stages = append(r.stages, st)
		if st.plan.Name != "" {
			names[st.plan.Name] = i
		}
	}
	r.target = r.stages[len(r.stages)-1]
	if r.opts.Target != "" {
		i, ok := names[strings.ToLower(r.opts.Target)]
		if !ok {
			return errdefs.New(errdefs.InvalidArgument, "target stage %q could not be found", r.opts.Target)
		}
		r.target = r.stages[i]
	}
	r.markNeeded(r.target)
	return nil
}

func (r *run) markNeeded(st *stageState) {
	if st.needed {
		return
	}
	st.needed = true
	for _, d := range st.deps {
		r.markNeeded(r.stages[d])
	}
}

// newStage prepares stage i; names holds the earlier stages.
func (r *run) newStage(i int, names map[string]int) (*stageState, error) {
	ps := &r.plan.Stages[i]
	st := &stageState{index: i, plan: ps, display: ps.Name, baseStage: -1, total: 1, fromStages: map[string]int{}}
	if st.display == "" && len(r.plan.Stages) > 1 {
		st.display = "stage-" + strconv.Itoa(i)
	}
	locate := func(err error) error {
		return &StepError{File: r.plan.File, Line: ps.Line, Instruction: ps.Text, Err: classify(err, errdefs.InvalidArgument)}
	}
	base, err := r.lex.ProcessWordWithMap(ps.Base, r.meta)
	if err != nil {
		return nil, locate(err)
	}
	if base == "" {
		return nil, locate(fmt.Errorf("base name (%s) should not be blank", ps.Base))
	}
	st.base = base
	if j, ok := names[strings.ToLower(base)]; ok {
		st.baseStage = j
		st.deps = append(st.deps, j)
	}
	for _, step := range ps.Steps {
		if step == nil {
			return nil, locate(fmt.Errorf("nil step in stage %d", i))
		}
		switch s := step.(type) {
		case *RunStep, *WorkdirStep:
			st.total++
		case *CopyStep:
			st.total++
			j, err := r.fromStage(s.From, i, names)
			if err != nil {
				return nil, &StepError{File: r.plan.File, Line: s.Line, Instruction: s.Text, Err: classify(err, errdefs.InvalidArgument)}
			}
			if j >= 0 {
				st.deps = append(st.deps, j)
				st.fromStages[s.From] = j
			}
		}
	}
	return st, nil
}

// fromStage returns the index of the stage COPY --from=from names in stage
// i, or -1 when from is "" or an image.
func (r *run) fromStage(from string, i int, names map[string]int) (int, error) {
	if from == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(from); err == nil {
		if n < 0 || n >= len(r.plan.Stages) {
			return 0, fmt.Errorf("invalid stage index %d", n)
		}
		if n >= i {
			return 0, r.forwardRef(from, i)
		}
		return n, nil
	}
	if j, ok := names[strings.ToLower(from)]; ok {
		return j, nil
	}
	for j := i; j < len(r.plan.Stages); j++ {
		if r.plan.Stages[j].Name == strings.ToLower(from) {
			return 0, r.forwardRef(from, i)
		}
	}
	return -1, nil
}

func (r *run) forwardRef(from string, i int) error {
	cur := r.plan.Stages[i].Name
	if cur == "" {
		cur = "stage-" + strconv.Itoa(i)
	}
	return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", from, cur)
}

func (r *run) openContext(context.Context) error {
	v, err := newContextView(r.opts.ContextDir, r.plan.Ignore)
	if err != nil {
		return err
	}
	r.context = v
	return nil
}

func (r *run) makeScratch(context.Context) error {
	dir, err := os.MkdirTemp(r.b.workDir, "build-*")
	if err != nil {
		return fmt.Errorf("make build directory: %w", err)
	}
	r.dir = dir
	r.undo.push(func() {
		if err := os.RemoveAll(dir); err != nil {
			r.b.log.Warn("remove build directory", "err", err)
		}
	})
	return nil
}

// buildStages builds the needed stages in order.
func (r *run) buildStages(ctx context.Context) error {
	for _, n := range r.plan.Notes {
		r.log.note("NOTE: %s", n)
	}
	for _, st := range r.stages {
		if !st.needed {
			continue
		}
		if err := r.buildStage(ctx, st); err != nil {
			return err
		}
	}
	r.warnUnusedArgs()
	r.res.Steps = r.log.vertices()
	return nil
}

func (r *run) buildStage(ctx context.Context, st *stageState) error {
	if err := r.from(ctx, st); err != nil {
		return &StepError{File: r.plan.File, Line: st.plan.Line, Instruction: st.plan.Text, Err: err}
	}
	for _, step := range st.plan.Steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.current = 0
		err := r.dispatch(ctx, st, step)
		if err == nil {
			continue
		}
		if r.current != 0 {
			r.log.fail(r.current, err)
		}
		info := step.Info()
		return &StepError{File: r.plan.File, Line: info.Line, Instruction: info.Text, Err: err}
	}
	return nil
}

// vertex starts the log vertex of the current step.
func (r *run) vertex(st *stageState, text string) int {
	r.current = r.log.vertex(st.title(text))
	return r.current
}

func (r *run) warnUnusedArgs() {
	var unused []string
	for k := range r.opts.BuildArgs {
		if !r.declared[k] && !slices.Contains(predefinedArgs, k) {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		r.log.note("[Warning] One or more build-args %v were not consumed", unused)
	}
}

// export records the target stage as an image, once per tag.
func (r *run) export(ctx context.Context) error {
	start := time.Now()
	id := r.log.vertex("exporting to image")
	st := r.target
	names := r.opts.Tags
	if len(names) == 0 {
		names = []string{""}
	}
	for i, name := range names {
		imgID, err := r.b.images.Create(ctx, name, slices.Clone(st.layers), cloneConfig(st.config), slices.Clone(st.history))
		if err != nil {
			r.log.fail(id, err)
			return fmt.Errorf("create image: %w", err)
		}
		if i == 0 {
			r.res.ImageID = imgID
			r.log.line(id, "writing image %s", imgID)
		}
		if name != "" {
			r.log.line(id, "naming to %s", name)
		}
	}
	r.log.done(id, time.Since(start))
	return nil
}
