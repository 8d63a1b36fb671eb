package e2b

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Build statuses, E2B's TemplateBuildStatus.
const (
	buildWaiting  = "waiting" // requested; files are uploaded, the steps not yet sent
	buildBuilding = "building"
	buildReady    = "ready"
	buildError    = "error"
)

// templatesFileVersion is the version of templates.json; a file of another
// version is refused rather than misread.
const templatesFileVersion = 1

// maxBuildsKept bounds the build records of one template: the oldest
// finished builds no tag points to are dropped beyond it.
const maxBuildsKept = 20

// templatesFile is templates.json.
type templatesFile struct {
	Version   int               `json:"version"`
	Templates []*templateRecord `json:"templates"`
}

// templateRecord is one tenant's template.
type templateRecord struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Alias is the template's name, unique among the tenant's templates.
	Alias     string    `json:"alias"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Builds are oldest first.
	Builds []*buildRecord `json:"builds"`
	// Tags maps each tag to the ready build it names; the den image of a
	// tag is TemplateImage(ID, tag).
	Tags map[string]tagRecord `json:"tags"`
}

type tagRecord struct {
	BuildID   string    `json:"build_id"`
	CreatedAt time.Time `json:"created_at"`
}

// buildRecord is one build of a template.
type buildRecord struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Tags are the tags the build gets when it is ready.
	Tags     []string `json:"tags"`
	CPUCount int      `json:"cpu_count,omitempty"`
	MemoryMB int      `json:"memory_mb,omitempty"`
	// User is the user the template's sandboxes run as, when the steps
	// (or the base template's) set one.
	User string `json:"user,omitempty"`
	// Reason says why the build failed; Step is E2B's step name of the
	// failure ("base", "1".., "finalize") or "".
	Reason string `json:"reason,omitempty"`
	Step   string `json:"step,omitempty"`
}

func (b *buildRecord) fail(now time.Time, reason, step string) {
	b.Status, b.Reason, b.Step = buildError, reason, step
	b.UpdatedAt, b.FinishedAt = now, now
}

func (tpl *templateRecord) build(id string) *buildRecord {
	for _, b := range tpl.Builds {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// latest returns the newest build, or nil.
func (tpl *templateRecord) latest() *buildRecord {
	if len(tpl.Builds) == 0 {
		return nil
	}
	return tpl.Builds[len(tpl.Builds)-1]
}

// lastReady returns the newest ready build, or nil.
func (tpl *templateRecord) lastReady() *buildRecord {
	for _, b := range slices.Backward(tpl.Builds) {
		if b.Status == buildReady {
			return b
		}
	}
	return nil
}

// addBuild appends b and drops the oldest builds beyond maxBuildsKept that
// are finished and untagged.
func (tpl *templateRecord) addBuild(b *buildRecord) {
	tpl.Builds = append(tpl.Builds, b)
	tagged := map[string]bool{}
	for _, tag := range tpl.Tags {
		tagged[tag.BuildID] = true
	}
	for excess := len(tpl.Builds) - maxBuildsKept; excess > 0; excess-- {
		i := slices.IndexFunc(tpl.Builds, func(b *buildRecord) bool {
			return (b.Status == buildReady || b.Status == buildError) && !tagged[b.ID]
		})
		if i < 0 {
			return
		}
		tpl.Builds = slices.Delete(tpl.Builds, i, i+1)
	}
}

// loadTemplates reads templates.json; a missing file is an empty store.
func loadTemplates(path string) (map[string]*templateRecord, error) {
	out := map[string]*templateRecord{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read template records: %w", err)
	}
	var f templatesFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("read template records %s: %w", path, err)
	}
	if f.Version != templatesFileVersion {
		return nil, fmt.Errorf("read template records %s: version %d, this den reads version %d", path, f.Version, templatesFileVersion)
	}
	for _, tpl := range f.Templates {
		if tpl.Tags == nil {
			tpl.Tags = map[string]tagRecord{}
		}
		out[tpl.ID] = tpl
	}
	return out, nil
}

// saveLocked writes every record to templates.json, atomically.
// Preconditions: t.mu is held, or t is not shared yet.
func (t *Templates) saveLocked() error {
	f := templatesFile{Version: templatesFileVersion, Templates: make([]*templateRecord, 0, len(t.templates))}
	for _, tpl := range t.templates {
		f.Templates = append(f.Templates, tpl)
	}
	slices.SortFunc(f.Templates, func(a, b *templateRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode template records: %w", err)
	}
	if err := writeFileAtomic(t.recordsPath(), data, 0o600); err != nil {
		return fmt.Errorf("write template records: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to path through a synced temporary file in
// the same directory and a rename, then syncs the directory, so a crash
// leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}

// newTemplateID returns a template ID shaped like E2B's: 20 characters of
// [a-z2-7] (100 random bits).
func newTemplateID() string { return strings.ToLower(rand.Text()[:20]) }

// newBuildID returns a random (version 4) UUID: the SDKs parse build IDs
// of tags as UUIDs.
func newBuildID() (string, error) {
	b, err := randomBytes(16)
	if err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
