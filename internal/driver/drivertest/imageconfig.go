package drivertest

import (
	"testing"

	"github.com/denhq/den/api/envd/process"
	"github.com/denhq/den/internal/driver"
)

// testImageConfig checks that the image's working directory and user are
// the defaults of processes whose request names none, that Spec.User
// (which may name a group) overrides the image's user, and that the
// image's env reaches every process.
func (s *suite) testImageConfig(t *testing.T) {
	d, spec := s.setup(t)
	requireIsolation(t, d, "an image's users and directories")
	ctx := testCtx(t)
	spec.Image.User, spec.Image.WorkingDir = "user", "/tmp"
	spec.Image.Env = append(append([]string(nil), spec.Image.Env...), "DEN_IMAGE_CFG=img")
	bySpec := spec
	bySpec.ID += "-spec-user"
	bySpec.User = "0:1000"
	const probe = `echo "$(id -u):$(id -g) $(pwd) $DEN_IMAGE_CFG"`
	for _, tc := range []struct {
		name string
		spec driver.Spec
		want string
	}{
		{"image user", spec, "1000:1000 /tmp img\n"},
		{"spec user with group", bySpec, "0:1000 /tmp img\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.create(t, ctx, d, tc.spec)
			if got := mustShell(t, ctx, d, tc.spec.ID, probe).Stdout; got != tc.want {
				t.Errorf("identity, cwd and env = %q, want %q", got, tc.want)
			}
			res, err := ExecProcess(ctx, d, tc.spec.ID, &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", "pwd"}, Cwd: ptr("/")})
			if err != nil || res.Stdout != "/\n" {
				t.Errorf("pwd with cwd / = %+v, %v; want /", res, err)
			}
		})
	}
}

func ptr(s string) *string { return &s }
