package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cachedDockerfile = `FROM base
COPY a.txt /a.txt
RUN echo one > /one
COPY b.txt /b.txt
RUN echo two > /two
`

func TestRebuildIsServedFromCache(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	first, _ := h.mustBuild(cachedDockerfile, Options{})
	firstImg := h.images.last(t)
	if first.RunSteps != 2 || first.CachedSteps != 0 {
		t.Fatalf("first build: %+v", first)
	}

	second, log := h.mustBuild(cachedDockerfile, Options{})
	wantLog := `#1 [1/5] FROM base
#1 resolved base
#1 DONE
#2 [2/5] COPY a.txt /a.txt
#2 CACHED
#3 [3/5] RUN echo one > /one
#3 CACHED
#4 [4/5] COPY b.txt /b.txt
#4 CACHED
#5 [5/5] RUN echo two > /two
#5 CACHED
#6 exporting to image
#6 writing image ` + second.ImageID + `
#6 DONE
`
	if diff := cmp.Diff(wantLog, log); diff != "" {
		t.Errorf("log of the rebuild (-want +got):\n%s", diff)
	}
	if second.RunSteps != 0 || second.CachedSteps != 4 || h.runner.callCount() != 2 {
		t.Errorf("rebuild: %+v, %d runner calls; want everything cached", second, h.runner.callCount())
	}
	if diff := cmp.Diff(firstImg, h.images.last(t)); diff != "" {
		t.Errorf("rebuilt image differs (-first +second):\n%s", diff)
	}
	if second.ImageID != first.ImageID {
		t.Errorf("rebuilt image ID %s, first %s", second.ImageID, first.ImageID)
	}
}

func TestChangedContextRerunsFromTheChangedStep(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	h.mustBuild(cachedDockerfile, Options{})
	h.files(map[string]string{"b.txt": "B2"})
	res, log := h.mustBuild(cachedDockerfile, Options{})
	if res.CachedSteps != 2 || res.RunSteps != 1 || h.runner.callCount() != 3 {
		t.Errorf("after changing b.txt: %+v, %d runner calls; want COPY a and RUN one cached, RUN two run", res, h.runner.callCount())
	}
	for _, want := range []string{"#3 CACHED\n", "#4 [4/5] COPY b.txt /b.txt\n#4 DONE\n", "#5 [5/5] RUN echo two > /two\n#5 DONE\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if got := tree(t, h.images, h.images.last(t).Layers)["/b.txt"]; got != "file 644 0:0 B2" {
		t.Errorf("/b.txt = %q", got)
	}
	// Only the mode changes: that is a change too.
	os.Chmod(filepath.Join(h.ctxDir, "b.txt"), 0o600)
	if res, _ := h.mustBuild(cachedDockerfile, Options{}); res.RunSteps != 1 {
		t.Errorf("after chmod of b.txt: %d RUN steps, want 1", res.RunSteps)
	}
}

func TestNoCacheRunsEverything(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	h.mustBuild(cachedDockerfile, Options{})
	res, _ := h.mustBuild(cachedDockerfile, Options{NoCache: true})
	if res.CachedSteps != 0 || res.RunSteps != 2 || h.runner.callCount() != 4 {
		t.Errorf("--no-cache: %+v, %d runner calls", res, h.runner.callCount())
	}
	// A forced step misses; the step after it hits again when the forced
	// one produced the same layer.
	plan := mustParse(t, cachedDockerfile)
	plan.Stages[0].Steps[1].Info().Force = true
	res2, err := h.b.BuildPlan(context.Background(), *plan, Options{ContextDir: h.ctxDir})
	if err != nil {
		t.Fatal(err)
	}
	if res2.RunSteps != 1 || res2.CachedSteps != 3 {
		t.Errorf("forced RUN: %+v, want it alone run", res2)
	}
}

func TestVanishedLayerIsAMiss(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	h.mustBuild(cachedDockerfile, Options{})
	img := h.images.last(t)
	h.images.removeLayer(t, img.Layers[2]) // RUN echo one
	res, _ := h.mustBuild(cachedDockerfile, Options{})
	// The step runs again and makes the same layer, so the rest hits.
	if res.RunSteps != 1 || res.CachedSteps != 3 {
		t.Errorf("after the layer of RUN one vanished: %+v", res)
	}
	if diff := cmp.Diff(img.Layers, h.images.last(t).Layers); diff != "" {
		t.Errorf("layers (-before +after):\n%s", diff)
	}
}

func TestCorruptCacheEntryIsAMiss(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	h.mustBuild(cachedDockerfile, Options{})
	entries, err := filepath.Glob(filepath.Join(h.b.cache.dir, "*.json"))
	if err != nil || len(entries) != 4 {
		t.Fatalf("cache entries: %v, %v", entries, err)
	}
	for _, e := range entries {
		os.WriteFile(e, []byte("{not json"), 0o644)
	}
	if res, _ := h.mustBuild(cachedDockerfile, Options{}); res.CachedSteps != 0 || res.RunSteps != 2 {
		t.Errorf("with corrupt entries: %+v", res)
	}
	if res, _ := h.mustBuild(cachedDockerfile, Options{}); res.CachedSteps != 4 {
		t.Errorf("after rewriting the entries: %+v", res)
	}
}

func TestConcurrentBuildsShareTheCache(t *testing.T) {
	h := newHarness(t)
	h.files(map[string]string{"a.txt": "A", "b.txt": "B"})
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			df := cachedDockerfile + fmt.Sprintf("RUN echo %d > /n\n", i%2)
			_, errs[i] = h.b.Build(context.Background(), Options{ContextDir: h.ctxDir, DockerfileContent: []byte(df)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v", i, err)
		}
	}
	res, _ := h.mustBuild(cachedDockerfile+"RUN echo 1 > /n\n", Options{})
	if res.RunSteps != 0 {
		t.Errorf("after concurrent builds, a rebuild ran %d steps", res.RunSteps)
	}
	tmps, _ := filepath.Glob(filepath.Join(h.b.cache.dir, ".tmp-*"))
	if len(tmps) != 0 {
		t.Errorf("temporary cache files left: %v", tmps)
	}
}

func TestCacheRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	c := &cache{dir: dir}
	old := filepath.Join(dir, ".tmp-old")
	fresh := filepath.Join(dir, ".tmp-fresh")
	for _, p := range []string{old, fresh} {
		os.WriteFile(p, nil, 0o600)
	}
	past := mustTime(t, "2020-01-01T00:00:00Z")
	os.Chtimes(old, past, past)
	if err := c.removeStaleTemps(past.Add(staleTemp * 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}
