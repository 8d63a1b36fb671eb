package build

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// owner is a numeric uid and gid.
type owner struct {
	uid, gid int
}

func (o owner) String() string { return fmt.Sprintf("%d:%d", o.uid, o.gid) }

// lookupOwner resolves "user[:group]" as COPY --chown does: names are
// looked up in the /etc/passwd and /etc/group of v; a user without a group
// gets the user's primary group from passwd, or a gid equal to a numeric
// uid.
func lookupOwner(v *view, spec string) (owner, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	if user == "" || (hasGroup && group == "") {
		return owner{}, fmt.Errorf("invalid user %q: want user[:group]", spec)
	}
	var o owner
	if n, err := parseID(user); err == nil {
		o = owner{uid: n, gid: n}
	} else {
		e, ok := findEntry(v, "etc/passwd", user, 4)
		if !ok {
			return owner{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", user)
		}
		o.uid, _ = strconv.Atoi(e[2])
		o.gid, _ = strconv.Atoi(e[3])
	}
	if !hasGroup {
		return o, nil
	}
	if n, err := parseID(group); err == nil {
		o.gid = n
		return o, nil
	}
	e, ok := findEntry(v, "etc/group", group, 3)
	if !ok {
		return owner{}, fmt.Errorf("unable to find group %s: no matching entries in group file", group)
	}
	o.gid, _ = strconv.Atoi(e[2])
	return o, nil
}

// lookupOwnerOrRoot resolves USER for the directories WORKDIR creates; as
// in BuildKit, a user that cannot be found means root.
func lookupOwnerOrRoot(v *view, spec string) owner {
	if spec == "" {
		return owner{}
	}
	o, err := lookupOwner(v, spec)
	if err != nil {
		return owner{}
	}
	return o
}

func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	return int(n), err
}

// findEntry returns the fields of the line of a colon-separated database
// (passwd, group) whose first field is name and whose numeric fields (2
// up to min) parse.
func findEntry(v *view, file, name string, min int) ([]string, bool) {
	data, err := v.readFile(file)
	if err != nil {
		return nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < min || f[0] != name {
			continue
		}
		ok := true
		for _, id := range f[2:min] {
			if _, err := parseID(id); err != nil {
				ok = false
			}
		}
		if ok {
			return f, true
		}
	}
	return nil, false
}
