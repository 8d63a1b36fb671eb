package e2b

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/server"
)

// templateRoutes are the facade's template routes. GET /templates/aliases/{alias}
// and GET /templates/{id}/tags overlap (/templates/aliases/tags), which
// net/http refuses, so one pattern serves both.
var templateRoutes = []string{
	"POST /v3/templates",
	"GET /templates",
	"DELETE /templates/{id}",
	"GET /templates/{a}/{b}",
	"GET /templates/{id}/files/{hash}",
	"PUT /templates/{id}/files/{hash}/upload",
	"POST /v2/templates/{id}/builds/{buildID}",
	"GET /templates/{id}/builds/{buildID}/status",
	"POST /templates/tags",
	"DELETE /templates/tags",
}

func (a *api) templateRoutes() {
	a.handle("POST /v3/templates", a.requestTemplateBuild)
	a.handle("GET /templates", a.listTemplates)
	a.handle("DELETE /templates/{id}", a.deleteTemplate)
	a.handle("GET /templates/{a}/{b}", a.templateAliasOrTags)
	a.handle("GET /templates/{id}/files/{hash}", a.templateFilesLink)
	a.mux.HandleFunc("PUT /templates/{id}/files/{hash}/upload", a.uploadTemplateFiles)
	a.handle("POST /v2/templates/{id}/builds/{buildID}", a.startTemplateBuild)
	a.handle("GET /templates/{id}/builds/{buildID}/status", a.templateBuildStatus)
	a.handle("POST /templates/tags", a.assignTemplateTags)
	a.handle("DELETE /templates/tags", a.deleteTemplateTags)
}

func (a *api) requestTemplateBuild(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	var req templateBuildRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	nb, err := checkBuildRequest(req)
	if err != nil {
		return err
	}
	resp, err := tp.requestBuild(p.Tenant, nb)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, resp)
	return nil
}

// templateFilesLink answers whether a COPY step's files are uploaded, with
// a link to upload them (also when they are, for the SDKs' forceUpload).
func (a *api) templateFilesLink(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	id, err := tp.templateID(p.Tenant, r.PathValue("id"))
	if err != nil {
		return err
	}
	hash := r.PathValue("hash")
	if !hashPattern.MatchString(hash) {
		return invalid("invalid files hash %q: use 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'", hash)
	}
	resp := templateBuildFileUpload{Present: tp.hasFiles(id, hash), URL: tp.uploadURL(tp.baseURL(r), id, hash)}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// baseURL is the facade's URL as the SDK reaches it.
func (t *Templates) baseURL(r *http.Request) string {
	if t.cfg.BaseURL != "" {
		return t.cfg.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// uploadTemplateFiles is the PUT of an upload link: authenticated by the
// link's signature, not by an API key (the SDKs send none).
func (a *api) uploadTemplateFiles(w http.ResponseWriter, r *http.Request) {
	tp, err := a.templates()
	if err == nil {
		err = tp.upload(r)
	}
	var tooBig *tooLargeError
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.As(err, &tooBig):
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Code: http.StatusRequestEntityTooLarge, Message: err.Error()})
	default:
		if k := errdefs.KindOf(err); k == errdefs.Internal {
			a.cfg.Logger.Error("e2b template upload failed", "path", r.URL.Path, "err", err)
		}
		writeError(w, err)
	}
}

func (a *api) startTemplateBuild(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	var req templateBuildStart
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	id, err := tp.templateID(p.Tenant, r.PathValue("id"))
	if err != nil {
		return err
	}
	tb, user, err := a.templateBuild(p, tp, id, req)
	if err != nil {
		return err
	}
	if err := tp.start(p.Tenant, id, r.PathValue("buildID"), tb, user); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// templateBuild checks a build start and turns it into a TemplateBuild,
// with the user the template's sandboxes will run as.
func (a *api) templateBuild(p server.Principal, tp *Templates, id string, req templateBuildStart) (*TemplateBuild, string, error) {
	if len(req.FromImageRegistry) > 0 && string(req.FromImageRegistry) != "null" {
		return nil, "", errdefs.New(errdefs.Unsupported, "fromImageRegistry (registry credentials) is not supported by den yet: use an image den can pull without credentials")
	}
	switch {
	case req.FromImage == "" && req.FromTemplate == "":
		return nil, "", invalid("fromImage or fromTemplate is required")
	case req.FromImage != "" && req.FromTemplate != "":
		return nil, "", invalid("give fromImage or fromTemplate, not both")
	}
	steps, err := tp.checkSteps(id, req.Steps)
	if err != nil {
		return nil, "", err
	}
	tb := &TemplateBuild{FromImage: req.FromImage, Steps: steps, StartCmd: req.StartCmd, ReadyCmd: req.ReadyCmd, Force: req.Force}
	baseUser := ""
	if req.FromTemplate != "" {
		base, err := a.resolveTemplate(p, req.FromTemplate)
		if err != nil {
			return nil, "", errdefs.Wrap(errdefs.InvalidArgument, err, "fromTemplate")
		}
		tb.FromTemplate, baseUser = base.Image, base.User
		tb.CPUCount, tb.MemoryMB = base.CPUCount, base.MemoryMB
	}
	return tb, lastUser(steps, baseUser), nil
}

// resolveTemplate resolves a template reference of p's (Sandbox.create's
// templateID, a build's fromTemplate): one of p's templates, else a den
// image name. Names of templates' den images are not accepted as such.
func (a *api) resolveTemplate(p server.Principal, ref string) (templateRef, error) {
	if a.cfg.Templates != nil {
		tr, ok, err := a.cfg.Templates.resolve(p.Tenant, ref)
		if ok || err != nil {
			return tr, err
		}
	}
	if strings.HasPrefix(ref, templateImagePrefix) {
		return templateRef{}, errTemplateNotFound(ref)
	}
	return templateRef{Image: ref}, nil
}

// templateID returns the ID of tenant's template named by ID or alias.
func (t *Templates) templateID(tenant, idOrAlias string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tpl, err := t.getLocked(tenant, idOrAlias)
	if err != nil {
		return "", err
	}
	return tpl.ID, nil
}

func (a *api) templateBuildStatus(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	offset, err := intParam(q, "logsOffset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	limit, err := intParam(q, "limit", 100, 0, 100)
	if err != nil {
		return err
	}
	level := 0
	if l := q.Get("level"); l != "" {
		if level = slices.Index(logLevels, l); level < 0 {
			return invalid("invalid level %q: use debug, info, warn or error", l)
		}
	}
	info, err := tp.status(p.Tenant, r.PathValue("id"), r.PathValue("buildID"), offset, limit, level)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// intParam parses an optional integer query parameter within [min, max].
func intParam(q url.Values, name string, def, min, max int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, invalid("%s must be an integer between %d and %d, got %q", name, min, max, s)
	}
	return n, nil
}

// status is a build's TemplateBuildInfo with a page of its log. The logs of
// builds that ran before den restarted are gone.
func (t *Templates) status(tenant, id, buildID string, offset, limit, level int) (templateBuildInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tpl, b, err := t.buildLocked(tenant, id, buildID)
	if err != nil {
		return templateBuildInfo{}, err
	}
	info := templateBuildInfo{TemplateID: tpl.ID, BuildID: b.ID, Status: b.Status, Logs: []string{}, LogEntries: []buildLogEntry{}}
	rb := t.running[b.ID]
	if rb != nil {
		info.LogEntries = rb.log.page(offset, limit, level)
	}
	for _, e := range info.LogEntries {
		info.Logs = append(info.Logs, e.Message)
	}
	if b.Status == buildError {
		info.Reason = &buildStatusReason{Message: b.Reason, Step: b.Step, LogEntries: []buildLogEntry{}}
		if rb != nil {
			info.Reason.LogEntries = rb.log.tail(reasonLogLines)
		}
	}
	return info, nil
}

// templateAliasOrTags serves GET /templates/aliases/{alias} and GET
// /templates/{id}/tags.
func (a *api) templateAliasOrTags(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	switch {
	case r.PathValue("a") == "aliases":
		return a.templateAlias(w, r.PathValue("b"), p)
	case r.PathValue("b") == "tags":
		return a.templateTags(w, r.PathValue("a"), p)
	}
	return errdefs.New(errdefs.NotFound, "no route for %s %s", r.Method, r.URL.Path)
}

// templateAlias answers whether p has a template of the name ("alias" or
// "alias:tag") with a successful build (of the tag): the SDKs' exists.
func (a *api) templateAlias(w http.ResponseWriter, name string, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	alias, tag, err := parseName(name)
	if err != nil {
		return err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tpl := tp.lookupLocked(p.Tenant, alias)
	if tpl == nil || len(tpl.Tags) == 0 {
		return errTemplateNotFound(name)
	}
	if _, ok := tpl.Tags[tag]; tag != "" && !ok {
		return errNoTag(tpl, name, tag)
	}
	writeJSON(w, http.StatusOK, templateAliasResponse{TemplateID: tpl.ID})
	return nil
}

func (a *api) templateTags(w http.ResponseWriter, idOrAlias string, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tpl, err := tp.getLocked(p.Tenant, idOrAlias)
	if err != nil {
		return err
	}
	out := []templateTag{}
	for tag, tr := range tpl.Tags {
		out = append(out, templateTag{Tag: tag, BuildID: tr.BuildID, CreatedAt: tr.CreatedAt})
	}
	slices.SortFunc(out, func(x, y templateTag) int { return strings.Compare(x.Tag, y.Tag) })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) assignTemplateTags(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	var req assignTagsRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Target == "" {
		return invalid("target is required: the build to tag, as \"name:tag\"")
	}
	tags, err := checkTags(req.Tags)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return invalid("tags is required: the tags to assign")
	}
	resp, err := tp.assignTags(r.Context(), p.Tenant, req.Target, tags)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

func (a *api) deleteTemplateTags(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	var req deleteTagsRequest
	if err := decodeJSON(r, &req, false); err != nil {
		return err
	}
	if req.Name == "" {
		return invalid("name is required: the template's name")
	}
	if strings.Contains(req.Name, ":") {
		return invalid("name %q has a tag: give the template's name and the tags to remove in tags", req.Name)
	}
	tags, err := checkTags(req.Tags)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return invalid("tags is required: the tags to remove")
	}
	if err := tp.removeTags(r.Context(), p.Tenant, req.Name, tags); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) deleteTemplate(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	if err := tp.delete(r.Context(), p.Tenant, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) listTemplates(w http.ResponseWriter, r *http.Request, p server.Principal) error {
	tp, err := a.templates()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tp.list(p.Tenant))
	return nil
}

// list is tenant's templates, oldest first.
func (t *Templates) list(tenant string) []templateListed {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []templateListed{}
	for _, tpl := range t.templates {
		if tpl.Tenant != tenant {
			continue
		}
		l := templateListed{
			TemplateID: tpl.ID, Aliases: []string{tpl.Alias}, Names: []string{tpl.Alias},
			CreatedAt: tpl.CreatedAt, UpdatedAt: tpl.UpdatedAt, BuildCount: len(tpl.Builds), EnvdVersion: EnvdVersion,
		}
		if b := tpl.lastReady(); b != nil {
			l.BuildID, l.CPUCount, l.MemoryMB = b.ID, b.CPUCount, b.MemoryMB
		}
		if b := tpl.latest(); b != nil {
			l.BuildStatus = b.Status
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y templateListed) int { return x.CreatedAt.Compare(y.CreatedAt) })
	return out
}

// removeFiles removes the uploads of template id.
func (t *Templates) removeFiles(id string) {
	if err := os.RemoveAll(t.filesDir(id)); err != nil {
		t.log.Warn("remove files of a deleted template", "template", id, "err", err)
	}
}
