package guest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/denhq/den/internal/errdefs"
)

// defaultPath is PATH for processes when the base environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// account is a user of the sandbox as /etc/passwd and /etc/group describe it.
type account struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Home   string
}

// userDB reads the sandbox's passwd and group files on every lookup, so
// users added after the agent started are found.
type userDB struct {
	passwdPath string
	groupPath  string
}

// lookup returns the account named name.
func (db userDB) lookup(name string) (*account, error) {
	var acct *account
	err := scanColon(db.passwdPath, func(f []string) bool {
		if len(f) < 6 || f[0] != name {
			return true
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		acct = &account{Name: name, UID: uint32(uid), GID: uint32(gid), Home: f[5]}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	if acct == nil {
		return nil, errdefs.New(errdefs.InvalidArgument, "user %q not found", name)
	}
	if acct.Home == "" {
		acct.Home = "/"
	}
	acct.Groups = db.supplementary(name, acct.GID)
	return acct, nil
}

// supplementary returns the groups that list name as a member, plus gid.
func (db userDB) supplementary(name string, gid uint32) []uint32 {
	groups := []uint32{gid}
	_ = scanColon(db.groupPath, func(f []string) bool {
		if len(f) < 4 {
			return true
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(id) == gid {
			return true
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				groups = append(groups, uint32(id))
				break
			}
		}
		return true
	})
	return groups
}

// userName returns the name of uid, or the number when it has none.
func (db userDB) userName(uid uint32) string { return db.nameOf(db.passwdPath, uid) }

// groupName returns the name of gid, or the number when it has none.
func (db userDB) groupName(gid uint32) string { return db.nameOf(db.groupPath, gid) }

func (db userDB) nameOf(path string, id uint32) string {
	want := strconv.FormatUint(uint64(id), 10)
	name := want
	_ = scanColon(path, func(f []string) bool {
		if len(f) >= 3 && f[2] == want {
			name = f[0]
			return false
		}
		return true
	})
	return name
}

// scanColon calls fn with the fields of each non-comment line of a
// colon-separated file until fn returns false.
func scanColon(path string, fn func([]string) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !fn(strings.Split(line, ":")) {
			break
		}
	}
	return sc.Err()
}

// basicUser returns the user named by an "Authorization: Basic" header, or
// "" when the header is absent or not Basic.
func basicUser(h http.Header) (string, error) {
	v := h.Get("Authorization")
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return "", nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", errdefs.New(errdefs.InvalidArgument, "malformed Authorization header")
	}
	name, _, _ := strings.Cut(string(raw), ":")
	return name, nil
}

// credential returns the credential a child must run with to act as acct,
// or nil when the agent already is that user. An agent that is not root can
// act only as itself.
func (acct *account) credential() (*syscall.Credential, error) {
	euid := uint32(os.Geteuid())
	if euid != 0 {
		if acct.UID != euid {
			return nil, errdefs.New(errdefs.PermissionDenied, "agent is not root and cannot act as user %q", acct.Name)
		}
		return nil, nil
	}
	return &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: acct.Groups}, nil
}

// resolvePath turns a request path into an absolute, clean path: "~" and
// "~/x" expand to the user's home and relative paths resolve against it.
func (acct *account) resolvePath(p string) (string, error) {
	switch {
	case p == "":
		return "", errdefs.New(errdefs.InvalidArgument, "path is empty")
	case p == "~":
		return filepath.Clean(acct.Home), nil
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(acct.Home, p[2:]), nil
	case strings.HasPrefix(p, "~"):
		return "", errdefs.New(errdefs.InvalidArgument, "path %q: only ~ of the current user is supported", p)
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	}
	return filepath.Join(acct.Home, p), nil
}

// environ builds a child's environment: base, then the user's identity
// variables, then the request's own variables; later entries win.
func (acct *account) environ(base []string, extra map[string]string) []string {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			set(k, v)
		}
	}
	if _, ok := env["PATH"]; !ok {
		set("PATH", defaultPath)
	}
	set("HOME", acct.Home)
	set("USER", acct.Name)
	set("LOGNAME", acct.Name)
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		set(k, extra[k])
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}
