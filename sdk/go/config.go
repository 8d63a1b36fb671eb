package den

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Environment variables that configure the client.
const (
	EnvURL     = "DEN_URL"
	EnvAPIKey  = "DEN_API_KEY"
	EnvDataDir = "DEN_DATA_DIR"
)

// ErrNotConfigured is returned when no server URL is set anywhere.
var ErrNotConfigured = errors.New("den: no server URL: set DEN_URL and DEN_API_KEY, or start den with `den up`")

// DefaultDataDir returns den's data directory: $DEN_DATA_DIR, else
// /var/lib/den for root, else ~/.local/share/den.
func DefaultDataDir() string {
	if d := os.Getenv(EnvDataDir); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/den"
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "den")
	}
	return filepath.Join(home, ".local", "share", "den")
}

// FromEnv resolves the client's options the way the den CLI does: DEN_URL
// and DEN_API_KEY from the environment, each else from the env file that
// `den up` writes in DefaultDataDir(). It returns ErrNotConfigured when no
// URL is found.
func FromEnv() (Options, error) { return FromEnvDir("") }

// FromEnvDir is FromEnv reading the env file of dataDir ("" means
// DefaultDataDir()).
func FromEnvDir(dataDir string) (Options, error) {
	o := Options{URL: os.Getenv(EnvURL), APIKey: os.Getenv(EnvAPIKey)}
	if o.URL != "" && o.APIKey != "" {
		return o, nil
	}
	if dataDir == "" {
		dataDir = DefaultDataDir()
	}
	vars, err := ReadEnvFile(filepath.Join(dataDir, "env"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return o, err
	}
	if o.URL == "" {
		o.URL = vars[EnvURL]
	}
	if o.APIKey == "" {
		o.APIKey = vars[EnvAPIKey]
	}
	if o.URL == "" {
		return o, ErrNotConfigured
	}
	return o, nil
}

// ReadEnvFile parses a shell-style env file: KEY=VALUE lines, optionally
// prefixed with "export " and with single- or double-quoted values. Blank
// lines and lines starting with # are skipped.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		k, v, ok, err := parseEnvLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("read env file %s line %d: %w", path, n, err)
		}
		if ok {
			vars[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read env file %s: %w", path, err)
	}
	return vars, nil
}

// parseEnvLine parses one line of an env file; ok is false for blank and
// comment lines.
func parseEnvLine(line string) (key, value string, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", "", false, nil
	}
	line = strings.TrimSpace(strings.TrimPrefix(line, "export "))
	key, value, found := strings.Cut(line, "=")
	key = strings.TrimSpace(key)
	if !found || key == "" {
		return "", "", false, fmt.Errorf("want KEY=VALUE, got %q", line)
	}
	value = strings.TrimSpace(value)
	switch {
	case len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'':
		value = value[1 : len(value)-1]
	case len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"':
		uq, err := strconv.Unquote(value)
		if err != nil {
			return "", "", false, fmt.Errorf("bad quoted value for %s: %w", key, err)
		}
		value = uq
	}
	return key, value, true, nil
}
