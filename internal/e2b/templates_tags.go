package e2b

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/denhq/den/internal/errdefs"
)

// assignTags gives the build that target ("name:tag", the tag defaulting
// to "default") names more tags, moving them from other builds.
func (t *Templates) assignTags(ctx context.Context, tenant, target string, tags []string) (assignedTags, error) {
	name, srcTag := splitRef(target)
	if srcTag == "" {
		srcTag = defaultTag
	}
	t.mu.Lock()
	tpl, err := t.getLocked(tenant, name)
	var src tagRecord
	if err == nil {
		var ok bool
		if src, ok = tpl.Tags[srcTag]; !ok {
			err = errNoTag(tpl, target, srcTag)
		}
	}
	t.mu.Unlock()
	if err != nil {
		return assignedTags{}, err
	}
	for _, tag := range tags {
		if tag == srcTag {
			continue
		}
		if err := t.cfg.Builder.Tag(ctx, TemplateImage(tpl.ID, srcTag), TemplateImage(tpl.ID, tag)); err != nil {
			return assignedTags{}, fmt.Errorf("tag template %s as %s: %w", target, tag, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.templates[tpl.ID] != tpl {
		return assignedTags{}, errTemplateNotFound(name) // deleted meanwhile
	}
	now := t.cfg.Now().UTC()
	for _, tag := range tags {
		if tag != srcTag {
			tpl.Tags[tag] = tagRecord{BuildID: src.BuildID, CreatedAt: now}
		}
	}
	tpl.UpdatedAt = now
	if err := t.saveLocked(); err != nil {
		return assignedTags{}, err
	}
	return assignedTags{Tags: tags, BuildID: src.BuildID}, nil
}

// removeTags removes tags of tenant's template name, and their den images.
// Every tag must exist.
func (t *Templates) removeTags(ctx context.Context, tenant, name string, tags []string) error {
	t.mu.Lock()
	tpl, err := t.getLocked(tenant, name)
	if err == nil {
		for _, tag := range tags {
			if _, ok := tpl.Tags[tag]; !ok {
				err = errNoTag(tpl, name, tag)
				break
			}
		}
	}
	if err == nil {
		for _, tag := range tags {
			delete(tpl.Tags, tag)
		}
		tpl.UpdatedAt = t.cfg.Now().UTC()
		err = t.saveLocked()
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, tag := range tags {
		if err := t.cfg.Builder.Remove(ctx, TemplateImage(tpl.ID, tag)); err != nil {
			errs = append(errs, fmt.Errorf("remove image of tag %s: %w", tag, err))
		}
	}
	return errors.Join(errs...)
}

// delete removes tenant's template idOrAlias: its record, running builds,
// den images and uploaded files.
func (t *Templates) delete(ctx context.Context, tenant, idOrAlias string) error {
	t.mu.Lock()
	tpl, err := t.getLocked(tenant, idOrAlias)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	delete(t.templates, tpl.ID)
	if err := t.saveLocked(); err != nil {
		t.templates[tpl.ID] = tpl
		t.mu.Unlock()
		return err
	}
	for _, b := range tpl.Builds {
		if rb := t.running[b.ID]; rb != nil && rb.cancel != nil {
			rb.cancel() // its goroutine removes what it recorded
		}
		delete(t.running, b.ID)
	}
	t.mu.Unlock()
	t.log.Info("template deleted", "template", tpl.ID, "tenant", tenant)
	var errs []error
	for _, tag := range slices.Sorted(maps.Keys(tpl.Tags)) {
		if err := t.cfg.Builder.Remove(ctx, TemplateImage(tpl.ID, tag)); err != nil {
			errs = append(errs, fmt.Errorf("remove image of tag %s: %w", tag, err))
		}
	}
	t.removeFiles(tpl.ID)
	if err := errors.Join(errs...); err != nil {
		return errdefs.Wrap(errdefs.Internal, err, "template %s deleted, but not all of its images", tpl.ID)
	}
	return nil
}
