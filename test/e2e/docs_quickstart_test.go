package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/denhq/den/internal/testenv"
	den "github.com/denhq/den/sdk/go"
)

// TestDocsQuickstarts runs the quickstart at the top of docs/sdk-python.md
// and docs/sdk-typescript.md as a reader pastes it: the first ```sh block,
// with bash, from the repository root, against a fresh `den up` found
// through DEN_URL and DEN_API_KEY. It installs the SDK from ./sdk/python
// (pip, into a new virtualenv) and ./sdk/typescript (npm, into a new
// project). The one change made to the text is where those go: the
// quickstarts name /tmp/den-venv and /tmp/den-ts, the test its own
// temporary directories. Each quickstart must print what its comments
// promise (the command's output and exit code 3, the file read back and
// listed) and leave no sandbox behind. Harbor's quickstart (docs/harbor.md)
// is TestHarborDenEnvironment's second run. It runs with the SDK suites
// (DEN_TEST_E2B_SDKS=1, which make test sets).
func TestDocsQuickstarts(t *testing.T) {
	if os.Getenv("DEN_TEST_E2B_SDKS") != "1" {
		t.Skip("set DEN_TEST_E2B_SDKS=1 to run the SDK quickstarts of docs/ (pip and npm installs; make test sets it)")
	}
	for _, tool := range []string{"python3", "npm", "node"} {
		if lookPath(tool) == "" {
			testenv.Missing(t, "%s not found: the quickstarts need Python 3 with venv and Node.js >= 20", tool)
		}
	}
	in := startDen(t, "")
	root := testenv.RepoRoot()
	for _, tc := range []struct {
		doc, dir string
		// want are patterns of the lines the quickstart prints.
		want []string
	}{
		{"docs/sdk-python.md", "/tmp/den-venv", []string{
			`^hello from [a-z0-9]{20}$`, `^ 3$`, `^hi \[.*'note\.txt'.*\]$`,
		}},
		{"docs/sdk-typescript.md", "/tmp/den-ts", []string{
			`^hello from [a-z0-9]{20}$`, `^ 3$`, `^hi \[ .*'note\.txt'.* \]$`,
		}},
	} {
		t.Run(filepath.Base(tc.doc), func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(root, tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			script := firstShellBlock(string(text))
			if !strings.Contains(script, tc.dir) {
				t.Fatalf("the first sh block of %s does not install into %s:\n%s", tc.doc, tc.dir, script)
			}
			script = strings.ReplaceAll(script, tc.dir, filepath.Join(t.TempDir(), filepath.Base(tc.dir)))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
			cmd.Dir = root
			cmd.Env = append(withoutDen(os.Environ()), "DEN_URL="+in.url, "DEN_API_KEY="+in.key)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the quickstart of %s failed: %v\n%s\nscript:\n%s", tc.doc, err, out, script)
			}
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			for _, pat := range tc.want {
				re := regexp.MustCompile(pat)
				if !slices.ContainsFunc(lines, re.MatchString) {
					t.Errorf("the quickstart of %s printed no line matching %s:\n%s", tc.doc, pat, out)
				}
			}
			c, err := den.NewClient(den.Options{URL: in.url, APIKey: in.key})
			if err != nil {
				t.Fatal(err)
			}
			left, err := c.List(ctx, den.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, sb := range left.Sandboxes {
				t.Errorf("the quickstart of %s left sandbox %s behind (%s), want none: it deletes what it creates", tc.doc, sb.ID, sb.State)
			}
		})
	}
}

// firstShellBlock is the body of the first ```sh fenced block of a
// Markdown text, or "" when there is none.
func firstShellBlock(md string) string {
	_, rest, ok := strings.Cut(md, "```sh\n")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "\n```")
	return body + "\n"
}
