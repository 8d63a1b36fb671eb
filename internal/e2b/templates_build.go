package e2b

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
)

// reasonLogLines is how many of the last log entries a failure reason carries.
const reasonLogLines = 20

// newBuild is a checked build request.
type newBuild struct {
	alias              string
	tags               []string
	cpuCount, memoryMB int
}

// checkBuildRequest validates a POST /v3/templates body.
func checkBuildRequest(req templateBuildRequest) (newBuild, error) {
	name := req.Name
	if name == "" {
		name = req.Alias
	}
	if name == "" {
		return newBuild{}, invalid("name is required: the template's name, \"name\" or \"name:tag\"")
	}
	alias, tag, err := parseName(name)
	if err != nil {
		return newBuild{}, err
	}
	tags := req.Tags
	if tag != "" {
		tags = append([]string{tag}, tags...)
	}
	if tags, err = checkTags(tags); err != nil {
		return newBuild{}, err
	}
	if len(tags) == 0 {
		tags = []string{defaultTag}
	}
	nb := newBuild{alias: alias, tags: tags}
	if c := req.CPUCount; c != nil {
		if *c < 1 || *c > rest.MaxCPUs {
			return newBuild{}, invalid("cpuCount must be between 1 and %d, got %d", rest.MaxCPUs, *c)
		}
		nb.cpuCount = *c
	}
	if m := req.MemoryMB; m != nil {
		if *m < 128 || *m > rest.MaxMemoryMB {
			return newBuild{}, invalid("memoryMB must be between 128 and %d, got %d", rest.MaxMemoryMB, *m)
		}
		nb.memoryMB = *m
	}
	return nb, nil
}

// requestBuild records a new build, waiting for its steps, of tenant's
// template nb.alias, creating the template when it is new.
func (t *Templates) requestBuild(tenant string, nb newBuild) (templateRequestResponse, error) {
	buildID, err := newBuildID()
	if err != nil {
		return templateRequestResponse{}, err
	}
	now := t.cfg.Now().UTC()
	t.mu.Lock()
	defer t.mu.Unlock()
	tpl := t.aliasLocked(tenant, nb.alias)
	created := tpl == nil
	if created {
		tpl = &templateRecord{ID: newTemplateID(), Tenant: tenant, Alias: nb.alias, CreatedAt: now, Tags: map[string]tagRecord{}}
		t.templates[tpl.ID] = tpl
	}
	saved := *tpl
	tpl.UpdatedAt = now
	tpl.addBuild(&buildRecord{
		ID: buildID, Status: buildWaiting, CreatedAt: now, UpdatedAt: now,
		Tags: nb.tags, CPUCount: nb.cpuCount, MemoryMB: nb.memoryMB,
	})
	if err := t.saveLocked(); err != nil {
		if created {
			delete(t.templates, tpl.ID)
		} else {
			*tpl = saved
		}
		return templateRequestResponse{}, err
	}
	t.log.Info("template build requested", "template", tpl.ID, "build", buildID, "tenant", tenant)
	return templateRequestResponse{
		TemplateID: tpl.ID, BuildID: buildID, Names: []string{tpl.Alias},
		Tags: nb.tags, Aliases: []string{tpl.Alias},
	}, nil
}

// checkSteps validates the steps of a build start; COPY steps' files must
// have been uploaded to template id.
func (t *Templates) checkSteps(id string, in []templateStep) ([]TemplateStep, error) {
	out := make([]TemplateStep, 0, len(in))
	for i, s := range in {
		step := TemplateStep{Type: strings.ToUpper(s.Type), Args: s.Args, FilesHash: s.FilesHash, Force: s.Force}
		if err := t.checkStep(id, step); err != nil {
			return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "step %d (%s)", i+1, step)
		}
		out = append(out, step)
	}
	return out, nil
}

func (t *Templates) checkStep(id string, s TemplateStep) error {
	n := len(s.Args)
	switch s.Type {
	case StepRun:
		if n < 1 || n > 2 || strings.TrimSpace(s.Args[0]) == "" {
			return invalid("RUN takes a command and an optional user")
		}
	case StepCopy:
		if n < 2 || n > 4 || s.Args[0] == "" || s.Args[1] == "" {
			return invalid("COPY takes a source, a destination, an optional owner and an optional mode")
		}
		if n == 4 && s.Args[3] != "" {
			if _, err := strconv.ParseUint(s.Args[3], 8, 32); err != nil {
				return invalid("COPY mode %q is not an octal number", s.Args[3])
			}
		}
		return t.checkFiles(id, s.FilesHash)
	case StepEnv:
		if n == 0 || n%2 != 0 {
			return invalid("ENV takes name and value pairs")
		}
		for i := 0; i < n; i += 2 {
			if !envNamePattern.MatchString(s.Args[i]) {
				return invalid("ENV name %q is invalid", s.Args[i])
			}
		}
	case StepWorkdir, StepUser:
		if n != 1 || strings.TrimSpace(s.Args[0]) == "" {
			return invalid("%s takes one argument", s.Type)
		}
	default:
		return invalid("unsupported step type %q: den builds RUN, COPY, ENV, WORKDIR and USER", s.Type)
	}
	return nil
}

// checkFiles requires the files of a COPY step to be uploaded.
func (t *Templates) checkFiles(id, hash string) error {
	if !hashPattern.MatchString(hash) {
		return invalid("COPY needs the filesHash of its uploaded files, got %q", hash)
	}
	if _, err := os.Stat(filepath.Join(t.filesDir(id), hash)); err != nil {
		return invalid("the files of hash %s were not uploaded: get an upload link from GET /templates/%s/files/%s first", hash, id, hash)
	}
	return nil
}

// lastUser is the user the steps leave, or base when they set none.
func lastUser(steps []TemplateStep, base string) string {
	for _, s := range slices.Backward(steps) {
		if s.Type == StepUser {
			return s.Args[0]
		}
	}
	return base
}

// start marks build buildID of tenant's template id as building and runs tb
// in the background. tb.Names, TemplateID, BuildID, ContextDir and Log are
// filled in here.
func (t *Templates) start(tenant, id, buildID string, tb *TemplateBuild, user string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errdefs.New(errdefs.Unavailable, "den is shutting down")
	}
	tpl, b, err := t.buildLocked(tenant, id, buildID)
	if err != nil {
		return err
	}
	if b.Status != buildWaiting {
		return errdefs.New(errdefs.Conflict, "build '%s' was already started (status %s)", buildID, b.Status)
	}
	now := t.cfg.Now().UTC()
	saved := *b
	b.Status, b.UpdatedAt, b.User = buildBuilding, now, user
	// Resources the request left out are the base template's (in tb).
	b.CPUCount, tb.CPUCount = cmp.Or(b.CPUCount, tb.CPUCount), cmp.Or(b.CPUCount, tb.CPUCount)
	b.MemoryMB, tb.MemoryMB = cmp.Or(b.MemoryMB, tb.MemoryMB), cmp.Or(b.MemoryMB, tb.MemoryMB)
	if err := t.saveLocked(); err != nil {
		*b = saved
		return err
	}
	tb.TemplateID, tb.BuildID, tb.ContextDir = tpl.ID, b.ID, t.filesDir(tpl.ID)
	for _, tag := range b.Tags {
		tb.Names = append(tb.Names, TemplateImage(tpl.ID, tag))
	}
	lg := newBuildLog(t.cfg.Now, t.cfg.LogLines)
	tb.Log = lg
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.BuildTimeout)
	t.running[b.ID] = &runningBuild{log: lg, cancel: cancel}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer cancel()
		t.run(ctx, tpl.Alias, tb, lg)
	}()
	return nil
}

// buildLocked finds build buildID of tenant's template id. Preconditions:
// t.mu is held.
func (t *Templates) buildLocked(tenant, id, buildID string) (*templateRecord, *buildRecord, error) {
	tpl, err := t.getLocked(tenant, id)
	if err != nil {
		return nil, nil, err
	}
	b := tpl.build(buildID)
	if b == nil {
		return nil, nil, errdefs.New(errdefs.NotFound, "build '%s' of template '%s' not found", buildID, id)
	}
	return tpl, b, nil
}

// run runs one build and records its outcome.
func (t *Templates) run(ctx context.Context, alias string, tb *TemplateBuild, lg *buildLog) {
	from := tb.FromImage
	if from == "" {
		from = tb.FromTemplate
	}
	lg.add("info", fmt.Sprintf("Building template %s (%s), build %s, from %s in %d steps", alias, tb.TemplateID, tb.BuildID, from, len(tb.Steps)))
	start := t.cfg.Now()
	err := t.cfg.Builder.Build(ctx, tb)
	lg.flush()
	reason, step := "", ""
	if err != nil {
		reason, step = failureReason(ctx, err, tb, t.cfg.BuildTimeout)
		lg.add("error", "Build failed: "+reason)
	} else {
		lg.add("info", fmt.Sprintf("Build finished in %s: template %s is ready with tags %s", t.cfg.Now().Sub(start).Round(time.Millisecond), alias, strings.Join(tagsOf(tb), ", ")))
	}
	if !t.finish(tb, reason, step) {
		// The template was deleted during the build: drop what it recorded.
		for _, name := range tb.Names {
			if err := t.cfg.Builder.Remove(context.WithoutCancel(ctx), name); err != nil {
				t.log.Warn("remove image of a deleted template", "image", name, "err", err)
			}
		}
	}
}

// finish records the outcome of a build; false when its template is gone.
func (t *Templates) finish(tb *TemplateBuild, reason, step string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rb := t.running[tb.BuildID]; rb != nil {
		rb.cancel = nil
		t.finished = append(t.finished, tb.BuildID)
		for len(t.finished) > maxFinishedLogs {
			delete(t.running, t.finished[0])
			t.finished = t.finished[1:]
		}
	}
	tpl := t.templates[tb.TemplateID]
	b := (*buildRecord)(nil)
	if tpl != nil {
		b = tpl.build(tb.BuildID)
	}
	if b == nil {
		return false
	}
	now := t.cfg.Now().UTC()
	if reason != "" {
		b.fail(now, reason, step)
	} else {
		b.Status, b.UpdatedAt, b.FinishedAt = buildReady, now, now
		for _, tag := range b.Tags {
			tpl.Tags[tag] = tagRecord{BuildID: b.ID, CreatedAt: now}
		}
		tpl.UpdatedAt = now
	}
	if err := t.saveLocked(); err != nil {
		t.log.Error("record template build outcome", "template", tpl.ID, "build", b.ID, "err", err)
	}
	t.log.Info("template build finished", "template", tpl.ID, "build", b.ID, "status", b.Status)
	return true
}

func tagsOf(tb *TemplateBuild) []string {
	out := make([]string, 0, len(tb.Names))
	for _, n := range tb.Names {
		_, tag := splitRef(strings.TrimPrefix(n, templateImagePrefix))
		out = append(out, tag)
	}
	return out
}

// failureReason is the message and E2B step name of a failed build.
func failureReason(ctx context.Context, err error, tb *TemplateBuild, timeout time.Duration) (msg, step string) {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("the build took longer than %s and was stopped", timeout), ""
	case ctx.Err() != nil:
		return "the build was stopped: den is shutting down or the template was deleted", ""
	}
	var se *BuildStepError
	if !errors.As(err, &se) {
		return err.Error(), ""
	}
	switch n := len(tb.Steps); {
	case se.Step <= 0:
		from := tb.FromImage
		if from == "" {
			from = tb.FromTemplate
		}
		return fmt.Sprintf("FROM %s failed: %v", from, se.Err), "base"
	case se.Step > n:
		return fmt.Sprintf("finalizing the template failed: %v", se.Err), "finalize"
	default:
		return fmt.Sprintf("step %d/%d %s failed: %v", se.Step, n, tb.Steps[se.Step-1], se.Err), strconv.Itoa(se.Step)
	}
}
