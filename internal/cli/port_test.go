package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// e2bFacade answers the E2B facade's GET /sandboxes/{id} for one sandbox,
// "sb-1" (also by the name "web"), to the test key.
func e2bFacade(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("X-API-Key") != testKey {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"code": 401, "message": "invalid API key"})
			return
		}
		if id := r.PathValue("id"); id != "sb-1" && id != "web" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"code": 404, "message": `sandbox "` + id + `" doesn't exist or you don't have access to it`})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"sandboxID": "sb-1", "envdAccessToken": "tok", "domain": "den.test"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPortCommand(t *testing.T) {
	isolate(t)
	t.Setenv(envSandboxURL, "")
	srv := e2bFacade(t)
	tests := []struct {
		name        string
		env         string // E2B_SANDBOX_URL in the environment
		envFile     string // the data dir's env file
		args        []string
		code        int
		out, errOut string
	}{
		{"text", "http://127.0.0.1:3001", "", []string{"port", "sb-1", "8080"}, 0,
			"http://8080-sb-1.den.test:3001/\nX-Access-Token: tok\n", ""},
		{"by name", "http://127.0.0.1:3001", "", []string{"port", "web", "80"}, 0,
			"http://80-sb-1.den.test:3001/\nX-Access-Token: tok\n", ""},
		{"json", "http://127.0.0.1:3001", "", []string{"port", "sb-1", "8080", "--json"}, 0,
			"{\n  \"url\": \"http://8080-sb-1.den.test:3001/\",\n  \"header\": \"X-Access-Token: tok\"\n}\n", ""},
		{"env file", "", "E2B_SANDBOX_URL=http://127.0.0.1:4001\n", []string{"port", "sb-1", "8080"}, 0,
			"http://8080-sb-1.den.test:4001/\nX-Access-Token: tok\n", ""},
		{"flag", "http://127.0.0.1:3001", "", []string{"port", "sb-1", "8080", "--sandbox-url", "https://sandboxes.example:443"}, 0,
			"https://8080-sb-1.den.test:443/\nX-Access-Token: tok\n", ""},
		{"no sandbox address", "", "", []string{"port", "sb-1", "8080"}, 1,
			"", "den: the sandbox traffic address is unknown: set E2B_SANDBOX_URL or --sandbox-url (den up writes it to <data-dir>/env)\n"},
		{"bad sandbox address", "127.0.0.1:3001", "", []string{"port", "sb-1", "8080"}, 1,
			"", "den: sandbox traffic address \"127.0.0.1:3001\": want http://HOST:PORT\n"},
		{"unknown sandbox", "http://127.0.0.1:3001", "", []string{"port", "nope", "8080"}, 1,
			"", "den: get sandbox nope: sandbox \"nope\" doesn't exist or you don't have access to it\n"},
		{"bad port", "http://127.0.0.1:3001", "", []string{"port", "sb-1", "0"}, 2,
			"", "den: invalid port \"0\": want a number from 1 to 65535 (0, every port, only with --public or --private)\nRun 'den port --help' for usage.\n"},
		{"one argument", "", "", []string{"port", "sb-1"}, 2,
			"", "den: den port takes a sandbox ID or name and a port, got 1 argument(s)\nRun 'den port --help' for usage.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envSandboxURL, tt.env)
			dir := t.TempDir()
			t.Setenv("DEN_DATA_DIR", dir)
			if tt.envFile != "" {
				if err := os.WriteFile(filepath.Join(dir, "env"), []byte(tt.envFile), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := cli(t, srv.URL, "", tt.args...)
			if r.code != tt.code || r.stdout != tt.out || r.stderr != tt.errOut {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", r.code, r.stdout, r.stderr, tt.code, tt.out, tt.errOut)
			}
		})
	}
}
