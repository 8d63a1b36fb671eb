package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/denhq/den/internal/errdefs"
)

// itemKind says how a COPY or ADD source is written.
type itemKind int

const (
	// itemTree is an entry of the source, copied (a directory: its
	// content).
	itemTree itemKind = iota
	// itemArchive is a local tar archive ADD unpacks.
	itemArchive
	// itemData is a here-document or a downloaded file.
	itemData
)

// copyItem is one resolved source of COPY or ADD.
type copyItem struct {
	kind itemKind
	// name is the entry's name when it is copied into a directory.
	name string
	// node is the entry (links followed) of itemTree and itemArchive.
	node *node
	// data, or the host file, is the content of itemData; meta its
	// metadata.
	data []byte
	file string
	meta meta
	hash string
}

// copyOp is a prepared COPY or ADD.
type copyOp struct {
	instr string
	src   *copySource
	lower *view
	// dest is the destination relative to the root; destDir says it
	// names a directory (a trailing slash).
	dest    string
	destDir bool
	chown   *owner
	chmod   *uint32
	items   []copyItem
	// contentHash replaces the items' hashes in the key (E2B's filesHash).
	contentHash string
}

// copyStep executes COPY or ADD.
func (r *run) copyStep(ctx context.Context, st *stageState, s *CopyStep) error {
	id := r.vertex(st, s.Text)
	op, createdBy, err := r.prepareCopy(ctx, st, s, id)
	if err != nil {
		return err
	}
	return r.layerStep(ctx, st, layerJob{id: id, key: op.key(st.key), force: s.Force, createdBy: createdBy,
		produce: op.write})
}

// copyWords are the substituted words of a COPY or ADD.
type copyWords struct {
	sources                      []string
	dest, chown, chmod, checksum string
}

func (r *run) copyWords(st *stageState, s *CopyStep) (copyWords, error) {
	words, err := r.expandAll(st, &s.StepInfo, append(slices.Clone(s.Sources), s.Dest, s.Chown, s.Chmod, s.Checksum))
	if err != nil {
		return copyWords{}, err
	}
	n := len(s.Sources)
	return copyWords{sources: words[:n], dest: words[n], chown: words[n+1], chmod: words[n+2], checksum: words[n+3]}, nil
}

// prepareCopy resolves everything a COPY or ADD depends on, for its cache
// key; nothing is written yet.
func (r *run) prepareCopy(ctx context.Context, st *stageState, s *CopyStep, id int) (*copyOp, string, error) {
	w, err := r.copyWords(st, s)
	if err != nil {
		return nil, "", err
	}
	op := &copyOp{instr: "COPY", dest: cleanRel(absPath(st, w.dest)), contentHash: s.ContentHash}
	if s.Add {
		op.instr = "ADD"
	}
	op.destDir = w.dest == "" || w.dest == "." || strings.HasSuffix(w.dest, "/")
	if err := checkChecksum(s.Add, w.sources, w.checksum); err != nil {
		return nil, "", err
	}
	if op.chmod, err = parseChmod(w.chmod); err != nil {
		return nil, "", err
	}
	if op.lower, err = r.stageView(st); err != nil {
		return nil, "", err
	}
	if w.chown != "" {
		o, err := lookupOwner(op.lower, w.chown)
		if err != nil {
			return nil, "", classify(err, errdefs.InvalidArgument)
		}
		op.chown = &o
	}
	if op.src, err = r.copySource(ctx, st, s.From, id); err != nil {
		return nil, "", err
	}
	if err := r.copyItems(ctx, st, s, op, w); err != nil {
		return nil, "", err
	}
	if err := op.checkDest(); err != nil {
		return nil, "", err
	}
	return op, op.createdBy(s.From, w), nil
}

// parseChmod parses --chmod; "" is none.
func parseChmod(s string) (*uint32, error) {
	if s == "" {
		return nil, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return nil, invalid("invalid chmod parameter %q: it should be an octal mode between 0 and 7777", s)
	}
	mode := uint32(m)
	return &mode, nil
}

// copyItems resolves and hashes the sources of s into op.items.
func (r *run) copyItems(ctx context.Context, st *stageState, s *CopyStep, op *copyOp, w copyWords) error {
	for _, src := range w.sources {
		if isURL(src) {
			if !s.Add {
				return invalid("source can't be a URL for COPY")
			}
			it, err := r.download(ctx, src, w.checksum)
			if err != nil {
				return err
			}
			op.items = append(op.items, it)
			continue
		}
		items, err := r.sourceItems(op.src, src, s.Add, op.contentHash == "")
		if err != nil {
			return err
		}
		op.items = append(op.items, items...)
	}
	for _, f := range s.Files {
		data := f.Data
		if f.Expand && !s.Literal {
			var err error
			if data, err = expandRaw(st, data); err != nil {
				return err
			}
		}
		sum := sha256.Sum256([]byte(data))
		op.items = append(op.items, copyItem{kind: itemData, name: f.Name, data: []byte(data),
			meta: meta{mode: 0o644}, hash: hex.EncodeToString(sum[:])})
	}
	return nil
}

// sourceItems resolves one source path (a glob, maybe) of src.
func (r *run) sourceItems(src *copySource, pattern string, add, hash bool) ([]copyItem, error) {
	matches, err := glob(src.view, pattern)
	if err != nil {
		return nil, invalid("%v", err)
	}
	var items []copyItem
	for _, m := range matches {
		n, err := src.view.stat(m)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, invalid("%q: no such file or directory in %s", pattern, src.desc)
		}
		if err != nil {
			return nil, err
		}
		it := copyItem{kind: itemTree, name: path.Base("/" + m), node: n}
		if add && n.info.Mode().IsRegular() {
			if ok, err := r.isArchive(n.host, pattern); err != nil {
				return nil, err
			} else if ok {
				it.kind = itemArchive
			}
		}
		if hash {
			if it.hash, err = hashNode(src.view, n, src.keepOwner); err != nil {
				return nil, fmt.Errorf("read %q: %w", pattern, err)
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// copySource returns the source COPY --from=from reads in stage st.
func (r *run) copySource(ctx context.Context, st *stageState, from string, id int) (*copySource, error) {
	if from == "" {
		return &copySource{desc: "the build context", view: r.context}, nil
	}
	if j, ok := st.fromStages[from]; ok {
		v, err := r.stageView(r.stages[j])
		if err != nil {
			return nil, err
		}
		return &copySource{desc: "stage " + from, view: v, keepOwner: true}, nil
	}
	out := r.log.output(id)
	base, err := r.resolveImage(ctx, from, out)
	out.Flush()
	if err != nil {
		return nil, err
	}
	dirs, err := r.layerDirs(base.Layers)
	if err != nil {
		return nil, err
	}
	return &copySource{desc: "image " + from, view: &view{layers: dirs, overlay: true}, keepOwner: true}, nil
}

// checkDest enforces Docker's rule that several sources need a directory
// as the destination.
func (op *copyOp) checkDest() error {
	if len(op.items) < 2 || op.destDir {
		return nil
	}
	if n, err := op.lower.stat(op.dest); err == nil && n.isDir() {
		return nil
	}
	return invalid("When using %s with more than one source file, the destination must be a directory and end with a /", op.instr)
}

// key is the cache key of op on a filesystem with key parent.
func (op *copyOp) key(parent string) string {
	parts := []string{cacheVersion, op.instr, parent, op.dest, strconv.FormatBool(op.destDir), op.contentHash}
	if op.chown != nil {
		parts = append(parts, "chown="+op.chown.String())
	}
	if op.chmod != nil {
		parts = append(parts, "chmod="+strconv.FormatUint(uint64(*op.chmod), 8))
	}
	for _, it := range op.items {
		parts = append(parts, strconv.Itoa(int(it.kind)), it.name, it.hash)
	}
	return keyOf(parts...)
}

// createdBy is the history entry of the instruction, substituted.
func (op *copyOp) createdBy(from string, w copyWords) string {
	words := []string{op.instr}
	for _, f := range []struct{ name, value string }{{"from", from}, {"chown", w.chown}, {"chmod", w.chmod}} {
		if f.value != "" {
			words = append(words, "--"+f.name+"="+f.value)
		}
	}
	words = append(words, w.sources...)
	for _, it := range op.items {
		if it.kind == itemData && it.file == "" {
			words = append(words, "<<"+it.name)
		}
	}
	return strings.Join(append(words, w.dest), " ")
}

// write performs op into the upper directory upper.
func (op *copyOp) write(ctx context.Context, upper string) error {
	w := newLayerWriter(upper, op.lower, op.chown, op.chmod)
	for _, it := range op.items {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch {
		case it.kind == itemArchive:
			err = w.extractArchive(ctx, it.node.host, op.dest)
		case it.kind == itemData:
			err = op.writeData(w, it)
		case it.node.isDir():
			err = w.copyNode(ctx, op.src, it.node, op.dest)
		default:
			err = w.copyNode(ctx, op.src, it.node, op.fileTarget(w, it.name))
		}
		if err != nil {
			return userPathError(err)
		}
	}
	return w.finish()
}

// fileTarget is where a single file named name goes: into the destination
// when it is a directory, else the destination itself.
func (op *copyOp) fileTarget(w *layerWriter, name string) string {
	if op.destDir {
		return path.Join(op.dest, name)
	}
	if n, err := w.view.stat(op.dest); err == nil && n.isDir() {
		return path.Join(op.dest, name)
	}
	return op.dest
}

func (op *copyOp) writeData(w *layerWriter, it copyItem) error {
	m := w.override(it.meta)
	if it.file == "" {
		_, err := w.writeFile(op.fileTarget(w, it.name), bytes.NewReader(it.data), m)
		return err
	}
	f, err := os.Open(it.file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = w.writeFile(op.fileTarget(w, it.name), f, m)
	return err
}
