package build

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/denhq/den/internal/errdefs"
)

// defaultPathEnv is PATH for RUN when the image sets none, and the Env of
// a stage built FROM scratch.
const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultShell wraps the shell form of RUN, CMD and ENTRYPOINT.
var defaultShell = []string{"/bin/sh", "-c"}

// from starts the stage st on its base: scratch, an earlier stage or an
// image.
func (r *run) from(ctx context.Context, st *stageState) error {
	start := time.Now()
	id := r.log.vertex(st.title("FROM " + st.base))
	if st.plan.Platform != "" {
		r.log.line(id, "NOTE: --platform=%s is ignored: den builds for the host platform", st.plan.Platform)
	}
	switch {
	case st.base == "scratch":
		st.config = ImageConfig{Env: []string{defaultPathEnv}}
		st.key = keyOf(cacheVersion, "scratch")
	case st.baseStage >= 0:
		from := r.stages[st.baseStage]
		st.layers = slices.Clone(from.layers)
		st.config = cloneConfig(from.config)
		st.history = slices.Clone(from.history)
		st.key, st.stamp = from.key, from.stamp
	default:
		out := r.log.output(id)
		base, err := r.resolveImage(ctx, st.base, out)
		out.Flush()
		if err != nil {
			r.log.fail(id, err)
			return err
		}
		st.layers = slices.Clone(base.Layers)
		st.config = cloneConfig(base.Config)
		st.key = keyOf(cacheVersion, "image", keyOfList(base.Layers))
		for range base.Layers {
			st.history = append(st.history, History{CreatedBy: "FROM " + base.Ref, Comment: "base image layer"})
		}
	}
	st.env = slices.Clone(st.config.Env)
	r.log.done(id, time.Since(start))
	return nil
}

// resolveImage resolves ref once per build and keeps its layers leased.
func (r *run) resolveImage(ctx context.Context, ref string, log *vertexWriter) (Base, error) {
	if b, ok := r.images[ref]; ok {
		return b, nil
	}
	b, err := r.b.images.Resolve(ctx, ref, r.opts.Pull, log)
	if err != nil {
		return Base{}, err
	}
	r.undo.push(r.b.images.Lease(b.Layers))
	for _, l := range b.Layers {
		if _, err := r.layerDir(l); err != nil {
			return Base{}, errdefs.Wrap(errdefs.FailedPrecondition, err, "image %s: layer %s is missing", ref, l)
		}
	}
	r.images[ref] = b
	return b, nil
}

// layerDir returns the directory of a layer, remembered for the build.
func (r *run) layerDir(diffID string) (string, error) {
	if d, ok := r.dirs[diffID]; ok {
		return d, nil
	}
	d, err := r.b.images.LayerDir(diffID)
	if err != nil {
		return "", err
	}
	r.dirs[diffID] = d
	return d, nil
}

// layerDirs returns the directories of layers (bottom first) topmost first.
func (r *run) layerDirs(layers []string) ([]string, error) {
	out := make([]string, 0, len(layers))
	for _, l := range slices.Backward(layers) {
		d, err := r.layerDir(l)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.FailedPrecondition, err, "layer %s is missing", l)
		}
		out = append(out, d)
	}
	return out, nil
}

// stageView returns the filesystem of st so far.
func (r *run) stageView(st *stageState) (*view, error) {
	dirs, err := r.layerDirs(st.layers)
	if err != nil {
		return nil, err
	}
	return &view{layers: dirs, overlay: true}, nil
}

// dispatch executes one step of st.
func (r *run) dispatch(ctx context.Context, st *stageState, step Step) error {
	switch s := step.(type) {
	case *RunStep:
		return r.runStep(ctx, st, s)
	case *CopyStep:
		return r.copyStep(ctx, st, s)
	case *WorkdirStep:
		return r.workdirStep(ctx, st, s)
	case *EnvStep:
		return r.envStep(st, s)
	case *ArgStep:
		return r.argStep(st, s)
	case *LabelStep:
		return r.labelStep(st, s)
	case *UserStep:
		return r.setWord(st, &s.StepInfo, "USER", s.User, &st.config.User)
	case *StopSignalStep:
		return r.setWord(st, &s.StepInfo, "STOPSIGNAL", s.Signal, &st.config.StopSignal)
	case *CmdStep:
		st.config.Cmd = r.withShell(st, s.Command, s.Exec)
		st.cmdSet = true
		st.addHistory(fmt.Sprintf("CMD %s", jsonList(st.config.Cmd)))
	case *EntrypointStep:
		st.config.Entrypoint = r.withShell(st, s.Command, s.Exec)
		if !st.cmdSet {
			st.config.Cmd = nil // an image's CMD does not outlive a new ENTRYPOINT
		}
		st.addHistory(fmt.Sprintf("ENTRYPOINT %s", jsonList(st.config.Entrypoint)))
	case *ShellStep:
		st.config.Shell = slices.Clone(s.Shell)
		st.addHistory(fmt.Sprintf("SHELL %s", jsonList(s.Shell)))
	case *ExposeStep:
		return r.exposeStep(st, s)
	case *NoteStep:
		r.log.note("NOTE: %s:%d: %s", r.plan.File, s.Line, s.Note)
	default:
		return fmt.Errorf("unknown step type %T", step)
	}
	return nil
}

// expand substitutes variables in word with the stage's environment.
func (r *run) expand(st *stageState, info *StepInfo, word string) (string, error) {
	if info.Literal {
		return word, nil
	}
	w, err := r.lex.ProcessWord(word, st.env)
	return w, classify(err, errdefs.InvalidArgument)
}

// expandAll expands each of words.
func (r *run) expandAll(st *stageState, info *StepInfo, words []string) ([]string, error) {
	out := make([]string, len(words))
	for i, w := range words {
		var err error
		if out[i], err = r.expand(st, info, w); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// expandRaw substitutes variables in a here-document, keeping quotes.
func expandRaw(st *stageState, data string) (string, error) {
	lex := shell.NewLex('\\')
	lex.SkipProcessQuotes = true
	w, err := lex.ProcessWord(data, st.env)
	return w, classify(err, errdefs.InvalidArgument)
}

// withShell returns the command of RUN, CMD or ENTRYPOINT as argv.
func (r *run) withShell(st *stageState, cmd []string, exec bool) []string {
	if exec || len(cmd) == 0 {
		return slices.Clone(cmd)
	}
	return append(shellOf(st), cmd...)
}

func shellOf(st *stageState) []string {
	if len(st.config.Shell) > 0 {
		return slices.Clone(st.config.Shell)
	}
	return slices.Clone(defaultShell)
}

func (r *run) envStep(st *stageState, s *EnvStep) error {
	var kvs []KeyValue
	for _, kv := range s.Vars {
		k, err := r.expand(st, &s.StepInfo, kv.Key)
		if err != nil {
			return err
		}
		v, err := r.expand(st, &s.StepInfo, kv.Value)
		if err != nil {
			return err
		}
		kvs = append(kvs, KeyValue{k, v})
	}
	// All words are expanded with the environment before the instruction.
	var msg strings.Builder
	msg.WriteString("ENV")
	for _, kv := range kvs {
		st.env = setEnv(st.env, kv.Key, kv.Value)
		st.config.Env = setEnv(st.config.Env, kv.Key, kv.Value)
		fmt.Fprintf(&msg, " %s=%s", kv.Key, kv.Value)
	}
	st.addHistory(msg.String())
	return nil
}

// argStep declares ARGs in the stage: a build arg wins over the default;
// an ARG without a default takes the global ARG of the same name.
func (r *run) argStep(st *stageState, s *ArgStep) error {
	var msg []string
	for _, a := range s.Args {
		name, err := r.expand(st, &s.StepInfo, a.Name)
		if err != nil {
			return err
		}
		av := argValue{name: name}
		if a.HasDefault {
			if av.value, err = r.expand(st, &s.StepInfo, a.Default); err != nil {
				return err
			}
			av.set = true
			msg = append(msg, name+"="+av.value)
		} else {
			msg = append(msg, name)
		}
		if v, ok := r.opts.BuildArgs[name]; ok {
			av.value, av.set = v, true
		} else if v, ok := r.meta[name]; ok && !a.HasDefault {
			av.value, av.set = v, true
		}
		r.declared[name] = true
		st.args = append(st.args, av)
		if av.set {
			st.env = setEnv(st.env, name, av.value)
		}
	}
	st.addHistory("ARG " + strings.Join(msg, " "))
	return nil
}

func (r *run) labelStep(st *stageState, s *LabelStep) error {
	var msg strings.Builder
	msg.WriteString("LABEL")
	labels := maps.Clone(st.config.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, kv := range s.Labels {
		k, err := r.expand(st, &s.StepInfo, kv.Key)
		if err != nil {
			return err
		}
		v, err := r.expand(st, &s.StepInfo, kv.Value)
		if err != nil {
			return err
		}
		labels[k] = v
		fmt.Fprintf(&msg, " %s=%s", k, v)
	}
	st.config.Labels = labels
	st.addHistory(msg.String())
	return nil
}

// setWord sets a single-word setting (USER, STOPSIGNAL).
func (r *run) setWord(st *stageState, info *StepInfo, instr, word string, dst *string) error {
	v, err := r.expand(st, info, word)
	if err != nil {
		return err
	}
	*dst = v
	st.addHistory(instr + " " + v)
	return nil
}

func (r *run) exposeStep(st *stageState, s *ExposeStep) error {
	ports := slices.Clone(st.config.ExposedPorts)
	for _, p := range s.Ports {
		words := []string{p}
		if !s.Literal {
			var err error
			if words, err = r.lex.ProcessWords(p, st.env); err != nil {
				return classify(err, errdefs.InvalidArgument)
			}
		}
		for _, w := range words {
			ps, err := parsePorts(w)
			if err != nil {
				return err
			}
			ports = append(ports, ps...)
		}
	}
	slices.Sort(ports)
	st.config.ExposedPorts = slices.Compact(ports)
	st.addHistory("EXPOSE " + strings.Join(st.config.ExposedPorts, " "))
	return nil
}

// parsePorts expands "80", "80/udp" and "8000-8002/tcp" to "port/proto"
// entries.
func parsePorts(spec string) ([]string, error) {
	ports, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, invalid("invalid proto: %s", proto)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, invalid("invalid containerPort: %s", ports)
	}
	end := start
	if isRange {
		if end, err = strconv.ParseUint(hi, 10, 16); err != nil || end < start {
			return nil, invalid("invalid range specified for containerPort: %s", ports)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

// setEnv sets key in a "KEY=value" list, replacing an existing entry.
func setEnv(env []string, key, value string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env = slices.Clone(env)
			env[i] = key + "=" + value
			return env
		}
	}
	return append(slices.Clone(env), key+"="+value)
}

// hasEnv reports whether key is set in env.
func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// workingDir is the absolute working directory of st.
func workingDir(st *stageState) string {
	if st.config.WorkingDir == "" {
		return "/"
	}
	return st.config.WorkingDir
}

// absPath makes p absolute against the stage's working directory.
func absPath(st *stageState, p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(workingDir(st), p)
}

func jsonList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// cloneConfig returns a deep copy of c.
func cloneConfig(c ImageConfig) ImageConfig {
	c.Env = slices.Clone(c.Env)
	c.Entrypoint = slices.Clone(c.Entrypoint)
	c.Cmd = slices.Clone(c.Cmd)
	c.Shell = slices.Clone(c.Shell)
	c.ExposedPorts = slices.Clone(c.ExposedPorts)
	c.Labels = maps.Clone(c.Labels)
	return c
}
