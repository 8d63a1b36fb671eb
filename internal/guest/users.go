package guest

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// userDB answers from the sandbox's passwd and group files. It parses each
// once and again only after it changed, so users added after the agent
// started are found while a process start or a directory listing reads
// no file (each read a trip out of the sentry under gVisor).
type userDB struct {
	passwd *colonFile
	group  *colonFile
}

// newUserDB returns a userDB of the files at passwdPath and groupPath.
// With gen, a file is known unchanged while gen says so; without, by a
// stat on each use.
func newUserDB(passwdPath, groupPath string, gen *fsGen) userDB {
	return userDB{passwd: &colonFile{path: passwdPath, gen: gen}, group: &colonFile{path: groupPath, gen: gen}}
}

// fsGen returns what tells db's files changed, or nil.
func (db userDB) fsGen() *fsGen {
	if db.passwd == nil {
		return nil
	}
	return db.passwd.gen
}

// lookup returns the account spec names. Like Docker's USER, spec is a
// user, optionally followed by ":group"; the user is a name or a uid, the
// group a name or a gid. A uid that /etc/passwd lacks is that uid with
// group 0 and home /; a group replaces the user's primary group.
func (db userDB) lookup(spec string) (*account, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	if user == "" || (hasGroup && group == "") {
		return nil, errdefs.New(errdefs.InvalidArgument, "user %q: want user or user:group", spec)
	}
	acct, err := db.lookupUser(user)
	if err != nil {
		return nil, err
	}
	acct.Groups = db.supplementary(acct.Name, acct.GID)
	if !hasGroup {
		return acct, nil
	}
	gid, err := db.lookupGroup(group)
	if err != nil {
		return nil, err
	}
	acct.GID = gid
	acct.Groups = append([]uint32{gid}, acct.Groups[1:]...)
	return acct, nil
}

// lookupUser returns the first passwd entry whose name, or uid when user
// is numeric, is user; else a bare account for a uid, or for root (uid 0:
// an image may have no /etc/passwd at all).
func (db userDB) lookupUser(user string) (*account, error) {
	var acct *account
	err := db.passwd.scan(func(f []string) bool {
		if len(f) < 6 || (f[0] != user && !(isID(user) && f[2] == user)) {
			return true
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
		}
		acct = &account{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5]}
		return false
	})
	bare := isID(user) || user == "root"
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && bare) {
		return nil, fmt.Errorf("read users: %w", err)
	}
	if acct == nil {
		if !bare {
			return nil, errdefs.New(errdefs.InvalidArgument, "user %q not found", user)
		}
		uid, _ := strconv.ParseUint(user, 10, 32) // root: 0
		acct = &account{Name: user, UID: uint32(uid)}
	}
	if acct.Home == "" {
		acct.Home = "/"
	}
	return acct, nil
}

// lookupGroup returns the gid of group (a name in /etc/group, else a gid).
func (db userDB) lookupGroup(group string) (uint32, error) {
	gid, found := uint32(0), false
	err := db.group.scan(func(f []string) bool {
		if len(f) < 3 || f[0] != group {
			return true
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		gid, found = uint32(id), err == nil
		return !found
	})
	if found {
		return gid, nil
	}
	id, perr := strconv.ParseUint(group, 10, 32)
	if perr == nil {
		return uint32(id), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read groups: %w", err)
	}
	return 0, errdefs.New(errdefs.InvalidArgument, "group %q not found", group)
}

// isID reports whether s is a numeric user or group id.
func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// supplementary returns the groups that list name as a member, plus gid.
func (db userDB) supplementary(name string, gid uint32) []uint32 {
	groups := []uint32{gid}
	_ = db.group.scan(func(f []string) bool {
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
func (db userDB) userName(uid uint32) string { return nameOf(db.passwd, uid) }

// groupName returns the name of gid, or the number when it has none.
func (db userDB) groupName(gid uint32) string { return nameOf(db.group, gid) }

func nameOf(file *colonFile, id uint32) string {
	want := strconv.FormatUint(uint64(id), 10)
	name := want
	_ = file.scan(func(f []string) bool {
		if len(f) >= 3 && f[2] == want {
			name = f[0]
			return false
		}
		return true
	})
	return name
}

// colonFile is a colon-separated file (passwd, group), kept parsed. A nil
// colonFile is a file that does not exist.
type colonFile struct {
	path string
	gen  *fsGen // nil: a stat on each use

	mu    sync.Mutex
	seen  fileVersion // of the file rows was parsed from; zero: none yet
	rows  [][]string  // the fields of each non-comment line
	atGen uint64      // with byGen: rows are good while gen is atGen
	byGen bool
}

// fileVersion tells two versions of a file apart: any write or rename
// changes its ctime, and the other fields cover a file replaced at once.
type fileVersion struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

// scan calls fn with the fields of each non-comment line until fn
// returns false. It reads the file again only when it changed since the
// last scan; a file changed between the stat and the read is cached under
// the older version, so the next scan reads it again.
func (c *colonFile) scan(fn func([]string) bool) error {
	rows, err := c.load()
	if err != nil {
		return err
	}
	for _, f := range rows {
		if !fn(f) {
			break
		}
	}
	return nil
}

func (c *colonFile) load() ([][]string, error) {
	if c == nil {
		return nil, &fs.PathError{Op: "open", Path: "", Err: fs.ErrNotExist}
	}
	gen, byGen := c.gen.Current()
	if byGen {
		c.mu.Lock()
		rows, hit := c.rows, c.byGen && c.atGen == gen
		c.mu.Unlock()
		if hit {
			return rows, nil
		}
		// Watch before the look; a file behind a link may change
		// where no watch sees it.
		byGen = c.gen.Watch(filepath.Dir(c.path), true)
		if fi, err := os.Lstat(c.path); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			byGen = false
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(c.path, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: c.path, Err: err}
	}
	v := fileVersion{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atGen, c.byGen = gen, byGen
	if c.seen == v {
		return c.rows, nil
	}
	rows, err := readColon(c.path)
	if err != nil {
		c.byGen = false
		return nil, err
	}
	c.seen, c.rows = v, rows
	return rows, nil
}

// readColon returns the fields of each non-comment line of a
// colon-separated file.
func readColon(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rows = append(rows, strings.Split(line, ":"))
	}
	return rows, sc.Err()
}

// basicUser returns the user named by an "Authorization: Basic" header, or
// "" when the header is absent or not Basic. The credentials are
// "user:password" with the password ignored (the e2b SDKs send it empty);
// they are cut at the last colon, so that a user may name a group
// ("1000:1000:" is user 1000, group 1000).
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
	name := string(raw)
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	return name, nil
}

// credential returns the credential a child must run with to act as acct,
// or nil when the agent already is exactly that user, groups included (the
// child then skips three set*id calls, each a trap under gVisor). An agent
// that is not root can act only as itself.
func (acct *account) credential() (*syscall.Credential, error) {
	self := agentIdentity()
	if self.uid != 0 {
		if acct.UID != self.uid {
			return nil, errdefs.New(errdefs.PermissionDenied, "agent is not root and cannot act as user %q", acct.Name)
		}
		return nil, nil
	}
	if acct.UID == self.uid && acct.GID == self.gid && self.groups != nil && sameGroups(acct.Groups, self.groups) {
		return nil, nil
	}
	return &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: acct.Groups}, nil
}

// identity is the agent's own user, group and supplementary groups
// (sorted; nil when unknown).
type identity struct {
	uid, gid uint32
	groups   []uint32
}

// agentIdentity is read once: the agent never changes its own.
var agentIdentity = sync.OnceValue(func() identity {
	id := identity{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
	if gs, err := os.Getgroups(); err == nil {
		id.groups = []uint32{}
		for _, g := range gs {
			id.groups = append(id.groups, uint32(g))
		}
		slices.Sort(id.groups)
	}
	return id
})

// sameGroups reports whether a holds the groups of sorted, as a set.
func sameGroups(a, sorted []uint32) bool {
	a = slices.Compact(slices.Sorted(slices.Values(a)))
	return slices.Equal(a, slices.Compact(slices.Clone(sorted)))
}

// resolvePath turns a request path into an absolute, clean path: "~" and
// "~/x" expand to the user's home and relative paths resolve against it.
func (acct *account) resolvePath(p string) (string, error) {
	switch {
	case p == "":
		return "", errdefs.New(errdefs.InvalidArgument, "path is empty")
	case strings.IndexByte(p, 0) >= 0:
		// No file name holds a NUL; say so rather than a bare EINVAL.
		return "", errdefs.New(errdefs.InvalidArgument, "path %q contains a NUL byte", p)
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
