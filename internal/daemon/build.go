package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/denhq/den/internal/build"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/node"
	"github.com/denhq/den/internal/server"
)

// newBuilder wires the Dockerfile build engine to the node's image store
// and to throw-away sandboxes of the node for RUN steps. Its scratch space
// lives in the data dir: the gVisor driver needs a step's upper directory
// on the same file system as its state.
func newBuilder(dataDir string, images *image.Store, n *node.Node, log *slog.Logger) (*build.Builder, error) {
	b, err := build.New(build.Config{
		Images:   buildImages{images},
		Runner:   stepRunner{n},
		WorkDir:  filepath.Join(dataDir, "build", "work"),
		CacheDir: filepath.Join(dataDir, "build", "cache"),
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("start image builder: %w", err)
	}
	return b, nil
}

// buildImages is the image store as the builder sees it.
type buildImages struct{ s *image.Store }

// Resolve implements build.Images.
func (b buildImages) Resolve(ctx context.Context, ref string, pull bool, log io.Writer) (build.Base, error) {
	img, err := b.s.Get(ref)
	if err != nil && pull && errdefs.IsNotFound(err) {
		fmt.Fprintf(log, "pulling %s\n", ref)
		img, err = b.s.Pull(ctx, ref, image.PullOptions{}, pullLog(log))
	}
	if err != nil {
		return build.Base{}, err
	}
	return build.Base{Ref: imageRef(img), Layers: img.Layers, Config: toBuildConfig(img.Config)}, nil
}

// pullLog writes a line per layer and phase of a pull to w.
func pullLog(w io.Writer) func(image.Progress) {
	last := map[string]string{}
	return func(p image.Progress) {
		if p.Detail == "" || last[p.Detail] == p.Phase {
			return
		}
		last[p.Detail] = p.Phase
		fmt.Fprintf(w, "%s %s\n", p.Phase, p.Detail)
	}
}

func imageRef(img *image.Image) string {
	if img.Name != "" {
		return img.Name
	}
	return img.ID
}

// LayerDir implements build.Images.
func (b buildImages) LayerDir(diffID string) (string, error) { return b.s.LayerDir(diffID) }

// CommitLayer implements build.Images.
func (b buildImages) CommitLayer(ctx context.Context, dir string, exclude []string) (string, error) {
	l, err := b.s.CommitLayer(ctx, dir, exclude)
	return l.DiffID, err
}

// Create implements build.Images.
func (b buildImages) Create(ctx context.Context, name string, layers []string, cfg build.ImageConfig, history []build.History) (string, error) {
	h := make([]image.History, len(history))
	for i, e := range history {
		h[i] = image.History{Created: e.Created, CreatedBy: e.CreatedBy, Comment: e.Comment, EmptyLayer: e.EmptyLayer}
	}
	img, err := b.s.Create(ctx, name, layers, fromBuildConfig(cfg), h)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// Lease implements build.Images.
func (b buildImages) Lease(diffIDs []string) func() { return b.s.Lease(diffIDs) }

func toBuildConfig(c image.Config) build.ImageConfig {
	return build.ImageConfig{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		Shell: c.Shell, ExposedPorts: c.ExposedPorts, Labels: c.Labels, StopSignal: c.StopSignal}
}

func fromBuildConfig(c build.ImageConfig) image.Config {
	return image.Config{Env: c.Env, WorkingDir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		Shell: c.Shell, ExposedPorts: c.ExposedPorts, Labels: c.Labels, StopSignal: c.StopSignal}
}

// stepRunner runs RUN steps in throw-away sandboxes of the node.
type stepRunner struct{ n *node.Node }

// Run implements build.Runner.
func (r stepRunner) Run(ctx context.Context, spec build.RunSpec) (int, error) {
	return r.n.RunStep(ctx, node.StepSpec{
		Layers: spec.Layers, Upper: spec.Upper, Args: spec.Args, Env: spec.Env, Dir: spec.Dir,
		User: spec.User, Network: spec.Network, Output: spec.Output,
	})
}

// serverBuilder serves the API's Dockerfile builds.
type serverBuilder struct{ b *build.Builder }

// Build implements server.Builder.
func (s serverBuilder) Build(ctx context.Context, req server.BuildRequest) (server.BuildResult, error) {
	res, err := s.b.Build(ctx, build.Options{
		ContextDir: req.ContextDir, Dockerfile: req.Dockerfile, Tags: req.Tags, BuildArgs: req.BuildArgs,
		Target: req.Target, NoCache: req.NoCache, Pull: req.Pull, Log: req.Log,
	})
	if err != nil {
		return server.BuildResult{}, err
	}
	return server.BuildResult{ImageID: res.ImageID, Tags: res.Tags, Steps: res.Steps,
		CachedSteps: res.CachedSteps, RunSteps: res.RunSteps, Duration: res.Duration}, nil
}
