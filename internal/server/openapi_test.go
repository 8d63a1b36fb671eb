package server

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// specOperations reads "METHOD /path" of every operation in
// api/openapi.yaml: path keys are indented two spaces under paths:,
// methods four.
func specOperations(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []string
	var path string
	inPaths := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && line != "" && !strings.HasPrefix(line, " "):
			inPaths = false
		case inPaths && strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":"):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case inPaths && strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     "):
			m := strings.TrimSuffix(strings.TrimSpace(line), ":")
			if slices.Contains([]string{"get", "post", "put", "patch", "delete"}, m) {
				ops = append(ops, strings.ToUpper(m)+" "+path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ops
}

// Every /v1 route is in the OpenAPI spec and every operation of the spec
// is a route. A route without a method (the envd proxy) covers every
// method of its path; {x...} is {x} in the spec.
func TestOpenAPISpecMatchesRoutes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	spec := specOperations(t)
	if len(spec) < 30 {
		t.Fatalf("read only %d operations from the spec: is the parser wrong?", len(spec))
	}
	routes := map[string]bool{}
	anyMethod := map[string]bool{}
	for _, r := range e.srv.apiRoutes {
		r = strings.ReplaceAll(r, "...}", "}")
		if method, path, ok := strings.Cut(r, " "); ok {
			routes[method+" "+path] = true
		} else {
			anyMethod[r] = true
		}
	}
	inSpec := map[string]bool{}
	for _, op := range spec {
		inSpec[op] = true
		_, path, _ := strings.Cut(op, " ")
		if !routes[op] && !anyMethod[path] {
			t.Errorf("the spec has %s, the server has no such route", op)
		}
	}
	for r := range routes {
		if !inSpec[r] {
			t.Errorf("the server serves %s, the spec does not have it", r)
		}
	}
}
