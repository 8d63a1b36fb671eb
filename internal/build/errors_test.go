package build

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/denhq/den/internal/errdefs"
)

func TestBuildErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, dockerfile string
		opts             Options
		want             string
		kind             errdefs.Kind
	}{
		{"unknown instruction", "FROM base\nRUN true\nFOO bar\n", Options{},
			"Dockerfile:3: FOO bar: unknown instruction: FOO", errdefs.InvalidArgument},
		{"missing COPY source", "FROM base\nENV A=1\n\n# comment\nRUN true\nWORKDIR /w\nCOPY nosuch /x\n", Options{},
			`Dockerfile:7: COPY nosuch /x: "nosuch": no such file or directory in the build context`, errdefs.InvalidArgument},
		{"instruction before FROM", "RUN true\nFROM base\n", Options{},
			"Dockerfile:1: RUN true: no build stage in current context", errdefs.InvalidArgument},
		{"FROM with two words", "FROM base extra\n", Options{},
			"Dockerfile:1: FROM base extra: FROM requires either one or three arguments", errdefs.InvalidArgument},
		{"bad stage name", "FROM base AS 1st\n", Options{},
			`Dockerfile:1: FROM base AS 1st: invalid name for build stage: "1st", name can't start with a number or contain symbols`, errdefs.InvalidArgument},
		{"duplicate stage name", "FROM base AS a\nFROM base AS a\n", Options{},
			`Dockerfile:2: FROM base AS a: duplicate stage name "a"`, errdefs.InvalidArgument},
		{"unknown flag", "FROM base\nCOPY --bogus=1 a b\n", Options{},
			"Dockerfile:2: COPY --bogus=1 a b: unknown flag: bogus", errdefs.InvalidArgument},
		{"flag without value", "FROM base\nCOPY --from a b\n", Options{},
			"Dockerfile:2: COPY --from a b: missing a value on flag: from", errdefs.InvalidArgument},
		{"COPY without destination", "FROM base\nCOPY a\n", Options{},
			"Dockerfile:2: COPY a: COPY requires at least two arguments, but only one was provided. Destination could not be determined", errdefs.InvalidArgument},
		{"SHELL not JSON", "FROM base\nSHELL bash -c\n", Options{},
			"Dockerfile:2: SHELL bash -c: SHELL requires the arguments to be in JSON form", errdefs.InvalidArgument},
		{"RUN --mount", "FROM base\nRUN --mount=type=cache,target=/c true\n", Options{},
			"Dockerfile:2: RUN --mount=type=cache,target=/c true: RUN --mount is not supported", errdefs.Unsupported},
		{"RUN --network=host", "FROM base\nRUN --network=host true\n", Options{},
			"Dockerfile:2: RUN --network=host true: RUN --network=host is not supported", errdefs.Unsupported},
		{"missing base image", "FROM nosuch\n", Options{},
			`Dockerfile:1: FROM nosuch: image "nosuch" not found`, errdefs.NotFound},
		{"blank base name", "ARG IMG\nFROM $IMG\n", Options{},
			"Dockerfile:2: FROM $IMG: base name ($IMG) should not be blank", errdefs.InvalidArgument},
		{"missing target", "FROM base AS a\n", Options{Target: "b"},
			`target stage "b" could not be found`, errdefs.InvalidArgument},
		{"no instructions", "# nothing\n", Options{},
			"Dockerfile:1: file with no instructions", errdefs.InvalidArgument},
		{"bad EXPOSE", "FROM base\nEXPOSE http\n", Options{},
			"Dockerfile:2: EXPOSE http: invalid containerPort: http", errdefs.InvalidArgument},
		{"bad substitution", "FROM base\nENV A=${B:?required}\n", Options{},
			"Dockerfile:2: ENV A=${B:?required}: failed to process \"${B:?required}\": B: required", errdefs.InvalidArgument},
		{"ENV syntax", "FROM base\nENV A=1 B\n", Options{},
			`Dockerfile:2: Syntax error - can't find = in "B". Must be of the form: name=value`, errdefs.InvalidArgument},
		{"unterminated heredoc", "FROM base\nRUN <<EOF\necho\n", Options{},
			"Dockerfile:2: unterminated heredoc", errdefs.InvalidArgument},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, log, err := h.build(tt.dockerfile, tt.opts)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error: %v\nwant:  %s\nlog:\n%s", err, tt.want, log)
			}
			if k := errdefs.KindOf(err); k != tt.kind {
				t.Errorf("kind %v, want %v", k, tt.kind)
			}
		})
	}
}

func TestFailingRunShowsOutputAndExitCode(t *testing.T) {
	h := newHarness(t)
	_, log, err := h.build("FROM base\nRUN echo building && exit 3\nRUN echo never\n", Options{})
	const want = `Dockerfile:2: RUN echo building && exit 3: process "/bin/sh -c echo building && exit 3" did not complete successfully: exit code 3`
	if err == nil || err.Error() != want {
		t.Fatalf("error: %v\nwant:  %s", err, want)
	}
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || errdefs.KindOf(err) != errdefs.InvalidArgument {
		t.Errorf("error %#v: want an InvalidArgument ExitError with code 3", err)
	}
	const wantLog = `#1 [1/3] FROM base
#1 resolved base
#1 DONE
#2 [1/3] RUN echo building && exit 3
#2 building
#2 ERROR: process "/bin/sh -c echo building && exit 3" did not complete successfully: exit code 3
`
	if diff := cmp.Diff(strings.Replace(wantLog, "#2 [1/3]", "#2 [2/3]", 1), log); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	// A failed step is not cached: the next build runs it again.
	h.build("FROM base\nRUN echo building && exit 3\n", Options{})
	if n := h.runner.callCount(); n != 2 {
		t.Errorf("%d runner calls, want 2", n)
	}
}

// failingRunner fails as an unavailable sandbox service does.
type failingRunner struct{}

func (failingRunner) Run(context.Context, RunSpec) (int, error) {
	return 0, errdefs.New(errdefs.Unavailable, "no sandbox capacity")
}

func TestRunnerFailureKeepsItsKind(t *testing.T) {
	h := newHarness(t)
	h.b.runner = failingRunner{}
	_, _, err := h.build("FROM base\nRUN true\n", Options{})
	const want = "Dockerfile:2: RUN true: run command: no sandbox capacity"
	if err == nil || err.Error() != want || errdefs.KindOf(err) != errdefs.Unavailable {
		t.Errorf("error %v (%v), want %s (unavailable)", err, errdefs.KindOf(err), want)
	}
}
