package build

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/denhq/den/internal/errdefs"
)

// layerJob is a step that changes the filesystem: its cache key, and how
// to produce its changes into an empty upper directory on a miss.
type layerJob struct {
	id        int
	key       string
	force     bool
	createdBy string
	// exclude are paths of upper that are not part of the layer.
	exclude []string
	produce func(ctx context.Context, upper string) error
}

// layerStep runs job through the cache: a hit reuses the recorded layer
// (when it still exists); a miss produces the layer, commits it and
// records it.
func (r *run) layerStep(ctx context.Context, st *stageState, job layerJob) error {
	start := time.Now()
	if !r.opts.NoCache && !job.force {
		if e, ok := r.cacheHit(job.key); ok {
			r.log.cached(job.id)
			st.addLayer(job.key, e.Layer, e.CreatedBy, e.Created)
			r.res.CachedSteps++
			return nil
		}
	}
	upper, err := os.MkdirTemp(r.dir, "layer-*")
	if err != nil {
		return fmt.Errorf("make upper directory: %w", err)
	}
	defer r.removeScratch(upper)
	if err := os.Chmod(upper, 0o755); err != nil {
		return fmt.Errorf("make upper directory: %w", err)
	}
	if err := job.produce(ctx, upper); err != nil {
		return err
	}
	diffID, err := r.b.images.CommitLayer(ctx, upper, job.exclude)
	if err != nil {
		return fmt.Errorf("commit layer: %w", err)
	}
	r.undo.push(r.b.images.Lease([]string{diffID}))
	e := cacheEntry{Layer: diffID, CreatedBy: job.createdBy, Created: time.Now().UTC()}
	if err := r.b.cache.put(job.key, e); err != nil {
		r.b.log.Warn("record build cache entry", "err", err)
	}
	st.addLayer(job.key, e.Layer, e.CreatedBy, e.Created)
	r.log.done(job.id, time.Since(start))
	return nil
}

// cacheHit returns the cache entry of key when its layer still exists, and
// leases the layer for the build.
func (r *run) cacheHit(key string) (cacheEntry, bool) {
	e, ok := r.b.cache.get(key)
	if !ok {
		return cacheEntry{}, false
	}
	release := r.b.images.Lease([]string{e.Layer})
	if _, err := r.layerDir(e.Layer); err != nil {
		release()
		return cacheEntry{}, false
	}
	r.undo.push(release)
	return e, true
}

func (r *run) removeScratch(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		r.b.log.Warn("remove build scratch directory", "err", err)
	}
}

// heredocDir is where the script of a RUN here-document with a #! line
// appears in the sandbox; it lives in a layer of its own above the stage's,
// so it never becomes part of the result.
const heredocDir = "/.den-build/heredoc"

// runStep executes RUN in a sandbox.
func (r *run) runStep(ctx context.Context, st *stageState, s *RunStep) error {
	id := r.vertex(st, s.Text)
	args, script, err := r.runArgs(st, s)
	if err != nil {
		return err
	}
	env, proxies := r.runEnv(st)
	spec := RunSpec{Args: args, Env: append(env, proxies...), Dir: workingDir(st), User: st.config.User}
	if s.User != "" {
		if spec.User, err = r.expand(st, &s.StepInfo, s.User); err != nil {
			return err
		}
	}
	if spec.Network, err = r.runNetwork(s.Network); err != nil {
		return err
	}
	var scriptData string
	if script != nil {
		scriptData = script.Name + "\x00" + script.Data
	}
	key := keyOf(cacheVersion, "run", st.key, keyOfList(args), keyOfList(env), spec.Dir, spec.User, spec.Network, scriptData)
	return r.layerStep(ctx, st, layerJob{id: id, key: key, force: s.Force, exclude: sandboxFiles,
		createdBy: "RUN " + runCommandString(args, st),
		produce: func(ctx context.Context, upper string) error {
			return r.execRun(ctx, st, id, spec, upper, script)
		}})
}

// runArgs returns the argv of RUN, with here-documents applied the way
// BuildKit does, and the here-document to provide as a script file.
func (r *run) runArgs(st *stageState, s *RunStep) ([]string, *InlineFile, error) {
	args := s.Command
	var script *InlineFile
	if len(s.Files) > 0 {
		if s.Exec || len(args) != 1 {
			return nil, nil, invalid("parsing produced an invalid run command: %v", args)
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			f := s.Files[0]
			if strings.HasPrefix(f.Data, "#!") {
				script = &f
				args = []string{path.Join(heredocDir, f.Name)}
			} else {
				args = []string{f.Data}
			}
		} else {
			full := args[0]
			for _, f := range s.Files {
				full += "\n" + f.Data + f.Name
			}
			args = []string{full}
		}
	}
	if len(args) == 0 {
		return nil, nil, invalid("RUN requires at least one argument")
	}
	return r.withShell(st, args, s.Exec), script, nil
}

// runEnv returns the environment of RUN (with PATH) and, apart, the proxy
// build args, which do not count for the cache.
func (r *run) runEnv(st *stageState) (env, proxies []string) {
	env = slices.Clone(st.env)
	if !hasEnv(env, "PATH") {
		env = append(env, defaultPathEnv)
	}
	for _, k := range predefinedArgs {
		if v, ok := r.opts.BuildArgs[k]; ok && !hasEnv(env, k) {
			proxies = append(proxies, k+"="+v)
		}
	}
	return env, proxies
}

func (r *run) runNetwork(flag string) (string, error) {
	switch flag {
	case "", "default":
		return r.opts.Network, nil
	case "none":
		return "none", nil
	}
	return "", errdefs.New(errdefs.Unsupported, "RUN --network=%s is not supported", flag)
}

// execRun runs spec in a sandbox with its writes going to upper.
func (r *run) execRun(ctx context.Context, st *stageState, id int, spec RunSpec, upper string, script *InlineFile) error {
	layers, err := r.layerDirs(st.layers)
	if err != nil {
		return err
	}
	if script != nil {
		dir, err := r.scriptLayer(script)
		if err != nil {
			return err
		}
		defer r.removeScratch(dir)
		layers = append([]string{dir}, layers...)
	}
	out := r.log.output(id)
	spec.Layers, spec.Upper, spec.Output = layers, upper, out
	code, err := r.b.runner.Run(ctx, spec)
	out.Flush()
	if err != nil {
		return fmt.Errorf("run command: %w", err)
	}
	r.res.RunSteps++
	if code != 0 {
		return errdefs.Wrap(errdefs.InvalidArgument, &ExitError{Args: spec.Args, Code: code}, "")
	}
	return nil
}

// scriptLayer makes a layer directory holding the here-document script.
func (r *run) scriptLayer(script *InlineFile) (string, error) {
	dir, err := os.MkdirTemp(r.dir, "heredoc-*")
	if err != nil {
		return "", fmt.Errorf("write here-document: %w", err)
	}
	p := filepath.Join(dir, filepath.FromSlash(heredocDir))
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.MkdirAll(p, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(p, script.Name), []byte(script.Data), 0o755)
	}
	if err != nil {
		r.removeScratch(dir)
		return "", fmt.Errorf("write here-document: %w", err)
	}
	return dir, nil
}

// runCommandString is the history entry of RUN, as BuildKit writes it:
// the stage's ARGs ("|2 A=1 B=2") before the command.
func runCommandString(args []string, st *stageState) string {
	var words []string
	if len(st.args) > 0 {
		words = append(words, fmt.Sprintf("|%d", len(st.args)))
		for _, a := range st.args {
			words = append(words, a.name+"="+a.value)
		}
	}
	return strings.Join(append(words, args...), " ")
}

// workdirStep sets the working directory and creates it when missing,
// owned by the stage's USER.
func (r *run) workdirStep(ctx context.Context, st *stageState, s *WorkdirStep) error {
	id := r.vertex(st, s.Text)
	p, err := r.expand(st, &s.StepInfo, s.Path)
	if err != nil {
		return err
	}
	wd := absPath(st, p)
	st.config.WorkingDir = wd
	v, err := r.stageView(st)
	if err != nil {
		return err
	}
	rel, err := v.resolve(cleanRel(wd), true)
	if err != nil {
		return userPathError(err)
	}
	if n, err := v.lookup(rel); err == nil {
		if !n.isDir() {
			return invalid("mkdir %s: not a directory", wd)
		}
		st.addHistory("WORKDIR " + wd)
		r.log.done(id, 0)
		return nil
	}
	own := lookupOwnerOrRoot(v, st.config.User)
	key := keyOf(cacheVersion, "workdir", st.key, wd, own.String())
	return r.layerStep(ctx, st, layerJob{id: id, key: key, force: s.Force, createdBy: "WORKDIR " + wd,
		produce: func(ctx context.Context, upper string) error {
			w := newLayerWriter(upper, v, nil, nil)
			if _, err := w.mkdirAll(rel, own); err != nil {
				return userPathError(err)
			}
			return w.finish()
		}})
}
