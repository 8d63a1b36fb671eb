package e2b

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestTemplateBuildFlow walks Template.build as the SDKs call it: request,
// files link, upload, start, status with logsOffset while building and
// after, then the alias, Sandbox.create by alias, tag and ID, tags, list
// and delete.
func TestTemplateBuildFlow(t *testing.T) {
	e := newTemplateEnv(t, nil)
	resp := e.requestBuild(e.keyA, `{"name":"My-App","cpuCount":2,"memoryMB":1024,"minFreeDiskMb":10}`)
	if !regexp.MustCompile(`^[a-z2-7]{20}$`).MatchString(resp.TemplateID) ||
		!regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(resp.BuildID) {
		t.Errorf("IDs: template %q, build %q", resp.TemplateID, resp.BuildID)
	}
	want := templateRequestResponse{TemplateID: resp.TemplateID, BuildID: resp.BuildID, Names: []string{"my-app"}, Tags: []string{"default"}, Aliases: []string{"my-app"}}
	if diff := cmp.Diff(want, resp); diff != "" {
		t.Errorf("request answer (-want +got):\n%s", diff)
	}
	id, hash := resp.TemplateID, sha("data")

	var link templateBuildFileUpload
	decode(t, e.mustCall("GET", "/templates/"+id+"/files/"+hash, e.keyA, "", 201).body, &link)
	if link.Present || !strings.HasPrefix(link.URL, e.api+"/templates/"+id+"/files/"+hash+"/upload?") {
		t.Fatalf("files link before the upload: %+v", link)
	}
	archive := makeTar(t, true, dirEntry("conf/"), file("data.txt", "hello data\n"), file("conf/app.ini", "x=1\n"), symlink("conf/link", "app.ini"))
	if r := e.put(link.URL, archive); r.status != http.StatusNoContent {
		t.Fatalf("upload: HTTP %d %s", r.status, r.body)
	}
	decode(t, e.mustCall("GET", "/templates/"+id+"/files/"+hash, e.keyA, "", 201).body, &link)
	if !link.Present || link.URL == "" {
		t.Errorf("files link after the upload: %+v (want present, with a URL for forceUpload)", link)
	}

	release := make(chan struct{})
	e.fb.setHook(func(ctx context.Context, tb *TemplateBuild) error {
		fmt.Fprintln(tb.Log, "waiting for the test")
		<-release
		return nil
	})
	steps := stepsJSON(t,
		templateStep{Type: "COPY", Args: []string{"data.txt", "/opt/data.txt", "", ""}, FilesHash: hash},
		templateStep{Type: "RUN", Args: []string{"echo built > /opt/built", "root"}},
		templateStep{Type: "ENV", Args: []string{"A", "1", "B", "two words"}},
		templateStep{Type: "WORKDIR", Args: []string{"/opt"}, Force: true},
	)
	e.mustCall("POST", "/v2/templates/"+id+"/builds/"+resp.BuildID, e.keyA,
		`{"fromImage":"busybox","steps":`+steps+`,"startCmd":"sleep 1","readyCmd":"true","force":false}`, 202)

	// While the build runs: status building, the log so far.
	var seen []buildLogEntry
	waitFor(t, "the build's first log lines", func() bool {
		var info templateBuildInfo
		decode(t, e.mustCall("GET", "/templates/"+id+"/builds/"+resp.BuildID+"/status?logsOffset="+fmt.Sprint(len(seen)), e.keyA, "", 200).body, &info)
		if info.Status != buildBuilding {
			t.Fatalf("status during the build: %s", info.Status)
		}
		seen = append(seen, info.LogEntries...)
		return strings.Contains(messages(seen), "waiting for the test")
	})
	close(release)
	info, rest := e.waitFrom(e.keyA, id, resp.BuildID, len(seen))
	logs := messages(append(seen, rest...))
	if info.Status != buildReady || info.Reason != nil {
		t.Fatalf("final status: %+v", info)
	}
	for _, line := range []string{"Building template my-app (" + id + ")", "FROM busybox", "step 1: COPY data.txt /opt/data.txt", "step 2: RUN echo built > /opt/built root",
		"step 4: WORKDIR /opt", "no newline at the endwaiting for the test\n", "Build finished in"} {
		if !strings.Contains(logs, line) {
			t.Errorf("build log lacks %q:\n%s", line, logs)
		}
	}
	if strings.Count(logs, "waiting for the test") != 1 {
		t.Errorf("logsOffset paging repeated or lost lines:\n%s", logs)
	}

	got := e.fb.lastBuild(t)
	wantBuild := TemplateBuild{
		TemplateID: id, BuildID: resp.BuildID, Names: []string{"e2b/" + id + ":default"}, FromImage: "busybox",
		Steps: []TemplateStep{
			{Type: "COPY", Args: []string{"data.txt", "/opt/data.txt", "", ""}, FilesHash: hash},
			{Type: "RUN", Args: []string{"echo built > /opt/built", "root"}},
			{Type: "ENV", Args: []string{"A", "1", "B", "two words"}},
			{Type: "WORKDIR", Args: []string{"/opt"}, Force: true},
		},
		ContextDir: filepath.Join(e.dir, "files", id), StartCmd: "sleep 1", ReadyCmd: "true", CPUCount: 2, MemoryMB: 1024,
	}
	if diff := cmp.Diff(wantBuild, got, cmpopts.IgnoreFields(TemplateBuild{}, "Log")); diff != "" {
		t.Errorf("TemplateBuild (-want +got):\n%s", diff)
	}
	if c := e.fb.copied[resp.BuildID+" /opt/data.txt"]; c != "hello data\n" {
		t.Errorf("the builder read COPY data.txt as %q", c)
	}
	if l, err := os.Readlink(filepath.Join(got.ContextDir, hash, "conf", "link")); err != nil || l != "app.ini" {
		t.Errorf("uploaded symlink: %q, %v", l, err)
	}

	var alias templateAliasResponse
	decode(t, e.mustCall("GET", "/templates/aliases/my-app", e.keyA, "", 200).body, &alias)
	if alias != (templateAliasResponse{TemplateID: id}) {
		t.Errorf("alias: %+v", alias)
	}
	e.mustCall("GET", "/templates/aliases/my-app:default", e.keyA, "", 200)

	// A build ID stands for the tag that names it (Harbor launches name:<build id>).
	for _, ref := range []string{"my-app", "MY-APP", "my-app:default", id, id + ":default", "my-app:" + resp.BuildID, id + ":" + resp.BuildID} {
		sb := e.create(e.keyA, `{"templateID":"`+ref+`"}`)
		if sb.TemplateID != id || sb.Alias != "my-app" {
			t.Errorf("create %q: templateID %q alias %q", ref, sb.TemplateID, sb.Alias)
		}
		var d sandboxDetail
		decode(t, e.mustCall("GET", "/sandboxes/"+sb.SandboxID, e.keyA, "", 200).body, &d)
		if d.TemplateID != id || d.CPUCount != 2 || d.MemoryMB != 1024 {
			t.Errorf("sandbox of %q: %+v", ref, d)
		}
		stored, err := e.st.Snapshot().Sandbox(sb.SandboxID)
		if err != nil || stored.Image != "e2b/"+id+":default" {
			t.Errorf("sandbox of %q runs image %q (%v)", ref, stored.Image, err)
		}
	}

	var assigned assignedTags
	decode(t, e.mustCall("POST", "/templates/tags", e.keyA, `{"target":"my-app:default","tags":["prod","v1"]}`, 201).body, &assigned)
	if diff := cmp.Diff(assignedTags{Tags: []string{"prod", "v1"}, BuildID: resp.BuildID}, assigned); diff != "" {
		t.Errorf("assigned tags (-want +got):\n%s", diff)
	}
	if !e.fb.hasImage("e2b/" + id + ":prod") {
		t.Error("no den image for the tag prod")
	}
	var tags []templateTag
	decode(t, e.mustCall("GET", "/templates/my-app/tags", e.keyA, "", 200).body, &tags)
	if len(tags) != 3 || tags[0].Tag != "default" || tags[1].Tag != "prod" || tags[2].BuildID != resp.BuildID || tags[2].CreatedAt.IsZero() {
		t.Errorf("tags: %+v", tags)
	}
	e.create(e.keyA, `{"templateID":"my-app:prod"}`)
	e.mustCall("DELETE", "/templates/tags", e.keyA, `{"name":"my-app","tags":["prod"]}`, 204)
	if e.fb.hasImage("e2b/" + id + ":prod") {
		t.Error("the den image of the removed tag prod is still there")
	}
	checkError(t, e.call("POST", "/v2/sandboxes", e.keyA, `{"templateID":"my-app:prod"}`), 404, "template 'my-app:prod' has no tag 'prod' (its tags: default, v1)")
	checkError(t, e.call("POST", "/v2/sandboxes", e.keyA, `{"templateID":"my-app:00000000-no-such-build"}`), 404,
		"template 'my-app:00000000-no-such-build' has no tag '00000000-no-such-build' (its tags: default, v1)")

	var list []templateListed
	decode(t, e.mustCall("GET", "/templates", e.keyA, "", 200).body, &list)
	if len(list) != 1 || list[0].TemplateID != id || list[0].BuildID != resp.BuildID || list[0].BuildStatus != "ready" ||
		list[0].CPUCount != 2 || list[0].Names[0] != "my-app" || list[0].EnvdVersion != EnvdVersion {
		t.Errorf("list: %+v", list)
	}

	e.mustCall("DELETE", "/templates/my-app", e.keyA, "", 204)
	for _, tag := range []string{"default", "v1"} {
		if e.fb.hasImage("e2b/" + id + ":" + tag) {
			t.Errorf("den image of tag %s left after delete", tag)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "files", id)); !os.IsNotExist(err) {
		t.Errorf("files of the deleted template: %v", err)
	}
	checkError(t, e.call("GET", "/templates/aliases/my-app", e.keyA, ""), 404, "template 'my-app' not found")
	checkError(t, e.call("POST", "/v2/sandboxes", e.keyA, `{"templateID":"my-app"}`), 404, "template 'my-app' not found")
	checkError(t, e.call("DELETE", "/templates/"+id, e.keyA, ""), 404, "template '"+id+"' not found")
}

// TestTemplateRebuild checks that a second build of a name reuses its
// template, that tags move to the new build and that "alias:tag" names
// tag the build.
func TestTemplateRebuild(t *testing.T) {
	e := newTemplateEnv(t, nil)
	run := stepsJSON(t, templateStep{Type: "RUN", Args: []string{"true"}})
	first, _ := e.build(e.keyA, `{"name":"app"}`, "busybox", run, nil)
	second, info := e.build(e.keyA, `{"name":"app:v2","tags":["latest","v2"]}`, "busybox", run, nil)
	if info.Status != buildReady || second.TemplateID != first.TemplateID || second.BuildID == first.BuildID {
		t.Fatalf("rebuild: %+v, %+v", second, info)
	}
	if diff := cmp.Diff([]string{"v2", "latest"}, second.Tags); diff != "" {
		t.Errorf("tags of name:tag plus tags (-want +got):\n%s", diff)
	}
	if got := e.fb.lastBuild(t).Names; !cmp.Equal(got, []string{"e2b/" + first.TemplateID + ":v2", "e2b/" + first.TemplateID + ":latest"}) {
		t.Errorf("names of the second build: %v", got)
	}
	third, _ := e.build(e.keyA, `{"name":"app"}`, "busybox", run, nil)
	var tags []templateTag
	decode(t, e.mustCall("GET", "/templates/"+first.TemplateID+"/tags", e.keyA, "", 200).body, &tags)
	builds := map[string]string{}
	for _, tg := range tags {
		builds[tg.Tag] = tg.BuildID
	}
	want := map[string]string{"default": third.BuildID, "latest": second.BuildID, "v2": second.BuildID}
	if diff := cmp.Diff(want, builds); diff != "" {
		t.Errorf("tag → build (-want +got):\n%s", diff)
	}
}

// TestTemplateBuildFailure checks the status and reason of failed builds,
// and that a template without a successful build does not exist for the
// SDKs' exists nor for Sandbox.create.
func TestTemplateBuildFailure(t *testing.T) {
	e := newTemplateEnv(t, nil)
	steps := stepsJSON(t,
		templateStep{Type: "ENV", Args: []string{"A", "1"}},
		templateStep{Type: "RUN", Args: []string{"echo out; exit 3"}},
		templateStep{Type: "USER", Args: []string{"root"}},
	)
	tests := []struct {
		name       string
		err        error
		msg, step  string
		logContain string
	}{
		{"step", &BuildStepError{Step: 2, Err: errors.New("exit status 3")}, "step 2/3 RUN echo out; exit 3 failed: exit status 3", "2", "Build failed: step 2/3"},
		{"wrapped step", fmt.Errorf("build: %w", &BuildStepError{Step: 0, Err: errors.New("image not found")}), "FROM busybox failed: image not found", "base", "FROM busybox failed"},
		{"finalize", &BuildStepError{Step: 4, Err: errors.New("ready command failed")}, "finalizing the template failed: ready command failed", "finalize", ""},
		{"no step", errors.New("disk full"), "disk full", "", "Build failed: disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fb.setHook(func(context.Context, *TemplateBuild) error { return tt.err })
			name := strings.ReplaceAll(tt.name, " ", "-")
			resp, info := e.build(e.keyA, `{"name":"`+name+`"}`, "busybox", steps, nil)
			if info.Status != buildError || info.Reason == nil || info.Reason.Message != tt.msg || info.Reason.Step != tt.step {
				t.Fatalf("status %s, reason %+v; want message %q step %q", info.Status, info.Reason, tt.msg, tt.step)
			}
			if !strings.Contains(messages(info.Reason.LogEntries), tt.logContain) {
				t.Errorf("reason's log entries lack %q:\n%s", tt.logContain, messages(info.Reason.LogEntries))
			}
			checkError(t, e.call("GET", "/templates/aliases/"+name, e.keyA, ""), 404, "not found")
			checkError(t, e.call("POST", "/v2/sandboxes", e.keyA, `{"templateID":"`+name+`"}`), 404, "template '"+name+"' has no successful build yet")
			e.mustCall("GET", "/templates/"+resp.TemplateID+"/builds/"+resp.BuildID+"/status", e.keyA, "", 200)
		})
	}
	e.fb.setHook(nil)
}

// TestTemplateFromTemplate builds a template on another: the builder gets
// the base's den image, and the user and resources carry over.
func TestTemplateFromTemplate(t *testing.T) {
	e := newTemplateEnv(t, nil)
	e.build(e.keyA, `{"name":"base-tpl","cpuCount":3}`, "busybox", stepsJSON(t, templateStep{Type: "USER", Args: []string{"root"}}), nil)
	base := e.fb.lastBuild(t)
	resp := e.requestBuild(e.keyA, `{"name":"child"}`)
	e.mustCall("POST", "/v2/templates/child/builds/"+resp.BuildID, e.keyA, `{"fromTemplate":"base-tpl","steps":[]}`, 202)
	if info, _ := e.wait(e.keyA, "child", resp.BuildID); info.Status != buildReady {
		t.Fatalf("child build: %+v", info)
	}
	child := e.fb.lastBuild(t)
	if child.FromTemplate != "e2b/"+base.TemplateID+":default" || child.FromImage != "" || child.CPUCount != 3 {
		t.Errorf("child build: from image %q template %q, %d CPUs", child.FromImage, child.FromTemplate, child.CPUCount)
	}
	sb := e.create(e.keyA, `{"templateID":"child"}`)
	stored, err := e.st.Snapshot().Sandbox(sb.SandboxID)
	if err != nil || stored.User != "root" || stored.CPUs != 3 {
		t.Errorf("sandbox of the child: %+v, %v", stored, err)
	}
}

// TestTemplateWrongInput checks each template route's answer to bad input.
func TestTemplateWrongInput(t *testing.T) {
	e := newTemplateEnv(t, nil)
	ready, _ := e.build(e.keyA, `{"name":"ready"}`, "busybox", "[]", nil)
	id := ready.TemplateID
	waiting := e.requestBuild(e.keyA, `{"name":"waiting"}`)
	start := "/v2/templates/" + waiting.TemplateID + "/builds/" + waiting.BuildID
	status := "/templates/" + id + "/builds/" + ready.BuildID + "/status"
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"request bad JSON", "POST", "/v3/templates", `{"name":`, 400, "invalid JSON body"},
		{"request no body", "POST", "/v3/templates", "", 400, "request body is empty"},
		{"request no name", "POST", "/v3/templates", `{}`, 400, "name is required"},
		{"request bad name", "POST", "/v3/templates", `{"name":"bad name!"}`, 400, `invalid template name "bad name!"`},
		{"request namespace", "POST", "/v3/templates", `{"name":"team/app"}`, 400, `template name "team/app" has a namespace`},
		{"request bad tag in name", "POST", "/v3/templates", `{"name":"app:bad tag"}`, 400, `invalid tag "bad tag"`},
		{"request bad tag", "POST", "/v3/templates", `{"name":"app","tags":["-x"]}`, 400, `invalid tag "-x"`},
		{"request cpus", "POST", "/v3/templates", `{"name":"app","cpuCount":0}`, 400, "cpuCount must be between 1 and 64, got 0"},
		{"request memory", "POST", "/v3/templates", `{"name":"app","memoryMB":64}`, 400, "memoryMB must be between 128 and 262144, got 64"},
		{"files unknown template", "GET", "/templates/nope/files/" + sha("x"), "", 404, "template 'nope' not found"},
		{"files bad hash", "GET", "/templates/" + id + "/files/a.b", "", 400, `invalid files hash "a.b"`},
		{"start bad JSON", "POST", start, `{"steps":`, 400, "invalid JSON body"},
		{"start unknown template", "POST", "/v2/templates/nope/builds/" + waiting.BuildID, `{"fromImage":"busybox"}`, 404, "template 'nope' not found"},
		{"start unknown build", "POST", "/v2/templates/" + waiting.TemplateID + "/builds/nope", `{"fromImage":"busybox"}`, 404, "build 'nope' of template"},
		{"start no base", "POST", start, `{"steps":[]}`, 400, "fromImage or fromTemplate is required"},
		{"start two bases", "POST", start, `{"fromImage":"busybox","fromTemplate":"ready"}`, 400, "not both"},
		{"start registry", "POST", start, `{"fromImage":"x","fromImageRegistry":{"type":"registry","username":"u","password":"p"}}`, 501, "fromImageRegistry (registry credentials) is not supported"},
		{"start unknown step", "POST", start, `{"fromImage":"busybox","steps":[{"type":"ADD","args":["a","b"]}]}`, 400, `step 1 (ADD a b): unsupported step type "ADD"`},
		{"start RUN no command", "POST", start, `{"fromImage":"busybox","steps":[{"type":"RUN","args":[" "]}]}`, 400, "step 1 (RUN  ): RUN takes a command and an optional user"},
		{"start ENV odd", "POST", start, `{"fromImage":"busybox","steps":[{"type":"ENV","args":["A"]}]}`, 400, "ENV takes name and value pairs"},
		{"start ENV bad name", "POST", start, `{"fromImage":"busybox","steps":[{"type":"ENV","args":["1A","x"]}]}`, 400, `ENV name "1A" is invalid`},
		{"start USER two args", "POST", start, `{"fromImage":"busybox","steps":[{"type":"USER","args":["a","b"]}]}`, 400, "USER takes one argument"},
		{"start COPY bad mode", "POST", start, `{"fromImage":"busybox","steps":[{"type":"COPY","args":["a","/b","","9"],"filesHash":"` + sha("a") + `"}]}`, 400, `COPY mode "9" is not an octal number`},
		{"start COPY no hash", "POST", start, `{"fromImage":"busybox","steps":[{"type":"COPY","args":["a","/b"]}]}`, 400, `COPY needs the filesHash of its uploaded files, got ""`},
		{"start COPY not uploaded", "POST", start, `{"fromImage":"busybox","steps":[{"type":"COPY","args":["a","/b"],"filesHash":"` + sha("a") + `"}]}`, 400, "the files of hash " + sha("a") + " were not uploaded"},
		{"start unknown fromTemplate", "POST", start, `{"fromTemplate":"e2b/zzz:default"}`, 400, "fromTemplate: template 'e2b/zzz:default' not found"},
		{"start fromTemplate no tag", "POST", start, `{"fromTemplate":"ready:nope"}`, 400, "fromTemplate: template 'ready:nope' has no tag 'nope' (its tags: default)"},
		{"start again", "POST", "/v2/templates/" + id + "/builds/" + ready.BuildID, `{"fromImage":"busybox"}`, 409, "build '" + ready.BuildID + "' was already started (status ready)"},
		{"status unknown build", "GET", "/templates/" + id + "/builds/nope/status", "", 404, "build 'nope' of template '" + id + "' not found"},
		{"status unknown template", "GET", "/templates/nope/builds/" + ready.BuildID + "/status", "", 404, "template 'nope' not found"},
		{"status bad offset", "GET", status + "?logsOffset=-1", "", 400, `logsOffset must be an integer between 0 and 2147483647, got "-1"`},
		{"status bad limit", "GET", status + "?limit=101", "", 400, `limit must be an integer between 0 and 100, got "101"`},
		{"status bad level", "GET", status + "?level=loud", "", 400, `invalid level "loud"`},
		{"alias bad name", "GET", "/templates/aliases/Bad%20Name", "", 400, `invalid template name "Bad Name"`},
		{"alias unknown", "GET", "/templates/aliases/nope", "", 404, "template 'nope' not found"},
		{"alias only requested", "GET", "/templates/aliases/waiting", "", 404, "template 'waiting' not found"},
		{"alias unknown tag", "GET", "/templates/aliases/ready:v9", "", 404, "template 'ready:v9' has no tag 'v9'"},
		{"no such route", "GET", "/templates/" + id + "/files", "", 404, "no route for GET /templates/" + id + "/files"},
		{"tags unknown template", "GET", "/templates/nope/tags", "", 404, "template 'nope' not found"},
		{"assign bad JSON", "POST", "/templates/tags", `{`, 400, "invalid JSON body"},
		{"assign no target", "POST", "/templates/tags", `{"tags":["x"]}`, 400, "target is required"},
		{"assign no tags", "POST", "/templates/tags", `{"target":"ready"}`, 400, "tags is required"},
		{"assign bad tag", "POST", "/templates/tags", `{"target":"ready","tags":["a b"]}`, 400, `invalid tag "a b"`},
		{"assign unknown template", "POST", "/templates/tags", `{"target":"nope:default","tags":["x"]}`, 404, "template 'nope' not found"},
		{"assign unknown source tag", "POST", "/templates/tags", `{"target":"ready:v9","tags":["x"]}`, 404, "template 'ready:v9' has no tag 'v9'"},
		{"remove name with tag", "DELETE", "/templates/tags", `{"name":"ready:default","tags":["x"]}`, 400, `name "ready:default" has a tag`},
		{"remove no tags", "DELETE", "/templates/tags", `{"name":"ready","tags":[]}`, 400, "tags is required"},
		{"remove unknown tag", "DELETE", "/templates/tags", `{"name":"ready","tags":["default","v9"]}`, 404, "template 'ready' has no tag 'v9'"},
		{"delete unknown", "DELETE", "/templates/nope", "", 404, "template 'nope' not found"},
		{"create with a template image name", "POST", "/v2/sandboxes", `{"templateID":"e2b/` + id + `:default"}`, 404, "template 'e2b/" + id + ":default' not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, e.call(tt.method, tt.path, e.keyA, tt.body), tt.status, tt.msg)
		})
	}
	// A refused tag removal removed nothing.
	e.mustCall("GET", "/templates/aliases/ready:default", e.keyA, "", 200)
}

// TestTemplatesDisabled checks the template routes of a facade without a
// template store.
func TestTemplatesDisabled(t *testing.T) {
	e := newTestEnv(t)
	checkError(t, e.call("POST", "/v3/templates", e.keyA, `{"name":"x"}`), 501, "template builds are not enabled on this den server")
	checkError(t, e.call("GET", "/templates/aliases/x", e.keyA, ""), 501, "template builds are not enabled")
	r := e.do("PUT", e.api+"/templates/x/files/y/upload", "data", nil)
	checkError(t, r, 501, "template builds are not enabled")
	checkError(t, e.call("GET", "/templates", "", ""), 401, "missing API key")
}

// TestTemplateTenantIsolation checks that another tenant's key gets 404 for
// a template on every route, and may use the same name for its own.
func TestTemplateTenantIsolation(t *testing.T) {
	e := newTemplateEnv(t, nil)
	a, _ := e.build(e.keyA, `{"name":"app"}`, "busybox", "[]", nil)
	id, build := a.TemplateID, a.BuildID
	routes := []struct{ method, path, body, msg string }{
		{"GET", "/templates/aliases/app", "", "template 'app' not found"},
		{"GET", "/templates/" + id + "/files/" + sha("x"), "", "template '" + id + "' not found"},
		{"POST", "/v2/templates/" + id + "/builds/" + build, `{"fromImage":"busybox"}`, "template '" + id + "' not found"},
		{"GET", "/templates/" + id + "/builds/" + build + "/status", "", "template '" + id + "' not found"},
		{"GET", "/templates/" + id + "/tags", "", "template '" + id + "' not found"},
		{"GET", "/templates/app/tags", "", "template 'app' not found"},
		{"POST", "/templates/tags", `{"target":"app:default","tags":["x"]}`, "template 'app' not found"},
		{"DELETE", "/templates/tags", `{"name":"app","tags":["default"]}`, "template 'app' not found"},
		{"DELETE", "/templates/" + id, "", "template '" + id + "' not found"},
		{"POST", "/v2/sandboxes", `{"templateID":"app"}`, "template 'app' not found"},
		{"POST", "/v2/sandboxes", `{"templateID":"` + id + `"}`, "template '" + id + "' not found"},
		{"POST", "/v2/sandboxes", `{"templateID":"e2b/` + id + `:default"}`, "template 'e2b/" + id + ":default' not found"},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path+" "+rt.body, func(t *testing.T) {
			checkError(t, e.call(rt.method, rt.path, e.keyB, rt.body), 404, rt.msg)
		})
	}
	var list []templateListed
	decode(t, e.mustCall("GET", "/templates", e.keyB, "", 200).body, &list)
	if len(list) != 0 {
		t.Errorf("tenant B lists %d templates", len(list))
	}
	b, info := e.build(e.keyB, `{"name":"app"}`, "busybox", "[]", nil)
	if info.Status != buildReady || b.TemplateID == id {
		t.Fatalf("tenant B's app: %+v %+v", b, info)
	}
	if sb := e.create(e.keyB, `{"templateID":"app"}`); sb.TemplateID != b.TemplateID {
		t.Errorf("tenant B's sandbox of app is of template %s, want %s", sb.TemplateID, b.TemplateID)
	}
	if sb := e.create(e.keyA, `{"templateID":"app"}`); sb.TemplateID != id {
		t.Errorf("tenant A's sandbox of app is of template %s, want %s", sb.TemplateID, id)
	}
	e.mustCall("GET", "/templates/aliases/app", e.keyA, "", 200)
}

// TestTemplatePersistence restarts the template store: templates, tags and
// waiting builds survive with their uploads; a build that was running is
// failed.
func TestTemplatePersistence(t *testing.T) {
	e := newTemplateEnv(t, nil)
	ready, _ := e.build(e.keyA, `{"name":"app","tags":["v1"],"memoryMB":512}`, "busybox", "[]", nil)
	e.mustCall("POST", "/templates/tags", e.keyA, `{"target":"app:v1","tags":["stable"]}`, 201)
	waiting := e.requestBuild(e.keyA, `{"name":"later"}`)
	hash := sha("later")
	e.upload(e.keyA, waiting.TemplateID, hash, makeTar(t, false, file("f.txt", "kept\n")))

	// A build running when den stops: snapshot the records while it runs,
	// as a crash would leave them.
	running := e.requestBuild(e.keyA, `{"name":"crashed"}`)
	started := make(chan struct{})
	e.fb.setHook(func(ctx context.Context, _ *TemplateBuild) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	e.mustCall("POST", "/v2/templates/crashed/builds/"+running.BuildID, e.keyA, `{"fromImage":"busybox"}`, 202)
	<-started
	snapshot, err := os.ReadFile(filepath.Join(e.dir, "templates.json"))
	if err != nil {
		t.Fatal(err)
	}
	e.stop()
	if err := os.WriteFile(filepath.Join(e.dir, "templates.json"), snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	e.fb.setHook(nil)
	e.start()

	e.mustCall("GET", "/templates/aliases/app:stable", e.keyA, "", 200)
	if sb := e.create(e.keyA, `{"templateID":"app:v1"}`); sb.TemplateID != ready.TemplateID {
		t.Errorf("sandbox after restart: %+v", sb)
	}
	var tags []templateTag
	decode(t, e.mustCall("GET", "/templates/app/tags", e.keyA, "", 200).body, &tags)
	if len(tags) != 2 || tags[0].Tag != "stable" || tags[1].Tag != "v1" || tags[0].BuildID != ready.BuildID {
		t.Errorf("tags after restart: %+v", tags)
	}
	checkError(t, e.call("GET", "/templates/aliases/crashed", e.keyA, ""), 404, "not found")
	var crashed templateBuildInfo
	decode(t, e.mustCall("GET", "/templates/crashed/builds/"+running.BuildID+"/status", e.keyA, "", 200).body, &crashed)
	if crashed.Status != buildError || crashed.Reason == nil || crashed.Reason.Message != "den restarted during the build; start it again" {
		t.Errorf("the build running at the restart: %+v", crashed)
	}

	var link templateBuildFileUpload
	decode(t, e.mustCall("GET", "/templates/"+waiting.TemplateID+"/files/"+hash, e.keyA, "", 201).body, &link)
	if !link.Present {
		t.Error("upload lost in the restart")
	}
	steps := stepsJSON(t, templateStep{Type: "COPY", Args: []string{"f.txt", "/f.txt"}, FilesHash: hash})
	e.mustCall("POST", "/v2/templates/later/builds/"+waiting.BuildID, e.keyA, `{"fromImage":"busybox","steps":`+steps+`}`, 202)
	if info, _ := e.wait(e.keyA, "later", waiting.BuildID); info.Status != buildReady {
		t.Errorf("the waiting build after the restart: %+v", info)
	}
	if c := e.fb.copied[waiting.BuildID+" /f.txt"]; c != "kept\n" {
		t.Errorf("COPY after the restart read %q", c)
	}
}

// TestTemplateCloseStopsBuilds checks that Close cancels a running build,
// waits for it and records it failed.
func TestTemplateCloseStopsBuilds(t *testing.T) {
	e := newTemplateEnv(t, nil)
	resp := e.requestBuild(e.keyA, `{"name":"slow"}`)
	started := make(chan struct{})
	e.fb.setHook(func(ctx context.Context, _ *TemplateBuild) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	e.mustCall("POST", "/v2/templates/slow/builds/"+resp.BuildID, e.keyA, `{"fromImage":"busybox"}`, 202)
	<-started
	e.stop() // returns only once the build goroutine ended
	e.fb.setHook(nil)
	e.start()
	var info templateBuildInfo
	decode(t, e.mustCall("GET", "/templates/slow/builds/"+resp.BuildID+"/status", e.keyA, "", 200).body, &info)
	if info.Status != buildError || info.Reason == nil || !strings.Contains(info.Reason.Message, "den is shutting down") {
		t.Errorf("build stopped by Close: %+v", info)
	}
}

// TestTemplateDeleteDuringBuild deletes a template while it builds: the
// build stops and leaves no image.
func TestTemplateDeleteDuringBuild(t *testing.T) {
	e := newTemplateEnv(t, nil)
	resp := e.requestBuild(e.keyA, `{"name":"gone"}`)
	started := make(chan struct{})
	e.fb.setHook(func(ctx context.Context, tb *TemplateBuild) error {
		close(started)
		<-ctx.Done()
		// A builder that records the image despite the cancellation.
		for _, name := range tb.Names {
			_ = e.fb.images.Tag("busybox", name)
		}
		return nil
	})
	e.mustCall("POST", "/v2/templates/gone/builds/"+resp.BuildID, e.keyA, `{"fromImage":"busybox"}`, 202)
	<-started
	e.mustCall("DELETE", "/templates/gone", e.keyA, "", 204)
	e.stop() // waits for the build goroutine
	e.fb.setHook(nil)
	e.start()
	if e.fb.hasImage("e2b/" + resp.TemplateID + ":default") {
		t.Error("the deleted template's build left its image")
	}
	checkError(t, e.call("GET", "/templates/gone/builds/"+resp.BuildID+"/status", e.keyA, ""), 404, "template 'gone' not found")
}

// waitFor polls cond until it holds, for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
