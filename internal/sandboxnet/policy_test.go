package sandboxnet

import (
	"strings"
	"testing"
)

func TestPolicyValidation(t *testing.T) {
	for _, bad := range []string{"", "::1", "fe80::/10", "exa mple.com", "-x.com", "*.", "a..b"} {
		if err := (Policy{Allow: []string{bad}}).Validate(); err == nil {
			t.Errorf("rule %q accepted", bad)
		}
	}
	p, err := Policy{Allow: []string{"Example.COM.", "10.1.2.3", "10.1.2.3/8", "*.Foo.org", "example.com"}}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com", "10.1.2.3/32", "10.0.0.0/8", "*.foo.org"}
	if strings.Join(p.Allow, " ") != strings.Join(want, " ") {
		t.Errorf("Normalize = %q, want %q", p.Allow, want)
	}
	c, _ := Policy{Internet: true, Deny: []string{"bad.com", "*.evil.org"}}.compile()
	for name, want := range map[string]bool{"good.com": true, "bad.com": false, "x.evil.org": false, "evil.org": true} {
		if c.nameAllowed(name) != want {
			t.Errorf("deny list: nameAllowed(%s) != %v", name, want)
		}
	}
	c, _ = Policy{Internet: false, Allow: []string{"example.test"}}.compile()
	for name, want := range map[string]bool{"example.test": true, "other.test": false, "a.example.test": false} {
		if c.nameAllowed(name) != want {
			t.Errorf("allow list: nameAllowed(%s) != %v", name, want)
		}
	}
	// Allow rules win over deny rules, as E2B's allowOut over denyOut.
	c, _ = Policy{Internet: true, Allow: []string{"x.evil.org"}, Deny: []string{"*.evil.org"}}.compile()
	for name, want := range map[string]bool{"x.evil.org": true, "y.evil.org": false, "good.com": true} {
		if c.nameAllowed(name) != want {
			t.Errorf("allow over deny: nameAllowed(%s) != %v", name, want)
		}
	}
}
