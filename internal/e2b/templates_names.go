package e2b

import (
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// defaultTag is the tag of a build whose request names none, and the tag a
// reference without one means.
const defaultTag = "default"

// maxTags bounds the tags of one request.
const maxTags = 20

var (
	// aliasPattern is a template name, after lower-casing (E2B lower-cases
	// names and allows [a-z0-9_-]; den also allows dots).
	aliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	// tagPattern is a tag, as Docker's.
	tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// hashPattern is the files hash of a COPY step (the SDKs send 64 hex
	// digits); it names a directory, so it must not hold a dot or slash.
	hashPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	// envNamePattern is an environment variable name of an ENV step.
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// splitRef splits "name:tag" into its parts; tag is "" when ref has none.
func splitRef(ref string) (name, tag string) {
	name, tag, _ = strings.Cut(ref, ":")
	return name, tag
}

// parseName parses an E2B template name, "alias" or "alias:tag", into the
// lower-cased alias and the tag ("" when none).
func parseName(ref string) (alias, tag string, err error) {
	name, tag := splitRef(ref)
	alias = strings.ToLower(strings.TrimSpace(name))
	switch {
	case strings.Contains(alias, "/"):
		return "", "", invalid("template name %q has a namespace: den has no team namespaces, use the bare name", ref)
	case !aliasPattern.MatchString(alias):
		return "", "", invalid("invalid template name %q: use 1 to 128 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", ref)
	case strings.Contains(ref, ":") && !tagPattern.MatchString(tag):
		return "", "", invalid("invalid tag %q in %q: use 1 to 128 characters of A-Z, a-z, 0-9, '_', '.' and '-'", tag, ref)
	}
	return alias, tag, nil
}

// checkTags validates a list of tags and returns it without duplicates.
func checkTags(tags []string) ([]string, error) {
	if len(tags) > maxTags {
		return nil, invalid("too many tags: %d, at most %d", len(tags), maxTags)
	}
	var out []string
	for _, tag := range tags {
		if !tagPattern.MatchString(tag) {
			return nil, invalid("invalid tag %q: use 1 to 128 characters of A-Z, a-z, 0-9, '_', '.' and '-'", tag)
		}
		if !slices.Contains(out, tag) {
			out = append(out, tag)
		}
	}
	return out, nil
}

// lookupLocked finds tenant's template by ID or alias (lower-cased), or
// nil. Preconditions: t.mu is held.
func (t *Templates) lookupLocked(tenant, idOrAlias string) *templateRecord {
	if tpl := t.templates[idOrAlias]; tpl != nil && tpl.Tenant == tenant {
		return tpl
	}
	return t.aliasLocked(tenant, strings.ToLower(idOrAlias))
}

// aliasLocked finds tenant's template of the alias, or nil. Preconditions:
// t.mu is held.
func (t *Templates) aliasLocked(tenant, alias string) *templateRecord {
	for _, tpl := range t.templates {
		if tpl.Tenant == tenant && tpl.Alias == alias {
			return tpl
		}
	}
	return nil
}

// getLocked is lookupLocked with E2B's 404. Preconditions: t.mu is held.
func (t *Templates) getLocked(tenant, idOrAlias string) (*templateRecord, error) {
	if tpl := t.lookupLocked(tenant, idOrAlias); tpl != nil {
		return tpl, nil
	}
	return nil, errTemplateNotFound(idOrAlias)
}

func errTemplateNotFound(ref string) error {
	return errdefs.New(errdefs.NotFound, "template '%s' not found", ref)
}

// templateRef is what a template reference of Sandbox.create (or of a
// build's fromTemplate) stands for.
type templateRef struct {
	// Image is the den image to start from.
	Image string
	// ID and Alias are the template's; empty for a plain den image.
	ID, Alias string
	// User is the user the template's steps left, or "".
	User               string
	CPUCount, MemoryMB int
}

// resolve finds tenant's template named by ref ("alias", "alias:tag", "id"
// or "id:tag"; the tag defaults to "default"). As in E2B, the part after
// the colon may also be a build ID, which stands for a tag that names that
// build (Harbor launches "name:<build id>" so that a later rebuild cannot
// change a running job). ok is false when ref names none of tenant's
// templates; err is NotFound when it names one that has no such tag.
func (t *Templates) resolve(tenant, ref string) (_ templateRef, ok bool, _ error) {
	name, tag := splitRef(ref)
	if tag == "" {
		tag = defaultTag
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tpl := t.lookupLocked(tenant, name)
	if tpl == nil {
		return templateRef{}, false, nil
	}
	tr, found := tpl.Tags[tag]
	if !found {
		if tag, found = tpl.tagOfBuild(tag); !found {
			return templateRef{}, true, errNoTag(tpl, ref, tag)
		}
		tr = tpl.Tags[tag]
	}
	out := templateRef{Image: TemplateImage(tpl.ID, tag), ID: tpl.ID, Alias: tpl.Alias}
	if b := tpl.build(tr.BuildID); b != nil {
		out.User, out.CPUCount, out.MemoryMB = b.User, b.CPUCount, b.MemoryMB
	}
	return out, true, nil
}

// tagOfBuild returns the first tag, in sorted order, that names the build
// buildID; ok is false, and tag is buildID, when none does (den keeps an
// image per tag, so a build no tag names any more cannot be started).
func (tpl *templateRecord) tagOfBuild(buildID string) (tag string, ok bool) {
	for _, name := range slices.Sorted(maps.Keys(tpl.Tags)) {
		if tpl.Tags[name].BuildID == buildID {
			return name, true
		}
	}
	return buildID, false
}

func errNoTag(tpl *templateRecord, ref, tag string) error {
	if len(tpl.Tags) == 0 {
		return errdefs.New(errdefs.NotFound, "template '%s' has no successful build yet", ref)
	}
	tags := make([]string, 0, len(tpl.Tags))
	for t := range tpl.Tags {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	return errdefs.New(errdefs.NotFound, "template '%s' has no tag '%s' (its tags: %s)", ref, tag, strings.Join(tags, ", "))
}

// templateOf returns the template ID and alias of a den image that is a
// template's, or "" and "".
func (t *Templates) templateOf(image string) (id, alias string) {
	rest, ok := strings.CutPrefix(image, templateImagePrefix)
	if !ok {
		return "", ""
	}
	id, _ = splitRef(rest)
	t.mu.Lock()
	defer t.mu.Unlock()
	if tpl := t.templates[id]; tpl != nil {
		return id, tpl.Alias
	}
	return id, ""
}
