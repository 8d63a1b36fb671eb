package sandboxnet

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/denhq/den/internal/errdefs"
)

// Policy is a sandbox's egress policy; see the package comment for how
// its rules combine. The zero Policy refuses everything; DefaultPolicy
// is what a sandbox gets unless it asks otherwise.
type Policy struct {
	// Internet lets the sandbox reach what no rule names.
	Internet bool `json:"internet"`
	// Allow and Deny are rules: an IPv4 address or CIDR, a domain
	// ("example.com": that name only), or "*.example.com" (its
	// subdomains, not itself). Allow rules win over deny rules (as E2B's
	// allowOut over denyOut): an allow list with the internet off lets
	// through only what it names.
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// DefaultPolicy is the internet on, no rules.
func DefaultPolicy() Policy { return Policy{Internet: true} }

// MaxRules bounds a policy's allow and deny rules together.
const MaxRules = 1024

// compiled is a policy split into the forms nftables and the resolver use.
type compiled struct {
	internet                bool
	allowNets, denyNets     []netip.Prefix
	allowNames, denyNames   []string // exact names
	allowSuffix, denySuffix []string // ".example.com" for "*.example.com"
}

// Validate checks p's rules, InvalidArgument naming a bad one.
func (p Policy) Validate() error {
	_, err := p.compile()
	return err
}

// Normalize returns p with its rules validated, lower-cased, CIDRs in
// canonical form and duplicates removed.
func (p Policy) Normalize() (Policy, error) {
	out := Policy{Internet: p.Internet}
	for _, list := range []struct {
		in  []string
		out *[]string
	}{{p.Allow, &out.Allow}, {p.Deny, &out.Deny}} {
		for _, r := range list.in {
			n, err := normalizeRule(r)
			if err != nil {
				return Policy{}, err
			}
			if !slices.Contains(*list.out, n) {
				*list.out = append(*list.out, n)
			}
		}
	}
	if len(out.Allow)+len(out.Deny) > MaxRules {
		return Policy{}, errdefs.New(errdefs.InvalidArgument, "network policy: %d rules, at most %d", len(out.Allow)+len(out.Deny), MaxRules)
	}
	return out, nil
}

// normalizeRule validates one rule and returns its canonical form.
func normalizeRule(r string) (string, error) {
	r = strings.TrimSpace(r)
	if r == "" {
		return "", errdefs.New(errdefs.InvalidArgument, "network policy: empty rule")
	}
	if a, err := netip.ParseAddr(r); err == nil {
		if !a.Is4() {
			return "", errdefs.New(errdefs.InvalidArgument, "network policy: rule %q: only IPv4 addresses (sandboxes have no IPv6)", r)
		}
		return a.String() + "/32", nil
	}
	if pfx, err := netip.ParsePrefix(r); err == nil {
		if !pfx.Addr().Is4() {
			return "", errdefs.New(errdefs.InvalidArgument, "network policy: rule %q: only IPv4 CIDRs (sandboxes have no IPv6)", r)
		}
		return pfx.Masked().String(), nil
	}
	name := strings.ToLower(strings.TrimSuffix(r, "."))
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	if !validDomain(name) {
		return "", errdefs.New(errdefs.InvalidArgument, "network policy: rule %q is not an IPv4 address, a CIDR, a domain or *.domain", r)
	}
	if wild {
		return "*." + name, nil
	}
	return name, nil
}

// validDomain reports whether name is a DNS name of letters, digits,
// hyphens and underscores, in labels of 1-63 bytes, 253 at most.
func validDomain(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (p Policy) compile() (compiled, error) {
	n, err := p.Normalize()
	if err != nil {
		return compiled{}, err
	}
	c := compiled{internet: n.Internet}
	add := func(r string, nets *[]netip.Prefix, names, suffixes *[]string) {
		if pfx, err := netip.ParsePrefix(r); err == nil {
			*nets = append(*nets, pfx)
		} else if s, ok := strings.CutPrefix(r, "*"); ok {
			*suffixes = append(*suffixes, s)
		} else {
			*names = append(*names, r)
		}
	}
	for _, r := range n.Allow {
		add(r, &c.allowNets, &c.allowNames, &c.allowSuffix)
	}
	for _, r := range n.Deny {
		add(r, &c.denyNets, &c.denyNames, &c.denySuffix)
	}
	return c, nil
}

// nameAllowed reports whether the resolver answers name (lower case, no
// trailing dot) for a sandbox of this policy.
func (c compiled) nameAllowed(name string) bool {
	match := func(names, suffixes []string) bool {
		if slices.Contains(names, name) {
			return true
		}
		for _, s := range suffixes {
			if strings.HasSuffix(name, s) {
				return true
			}
		}
		return false
	}
	if match(c.allowNames, c.allowSuffix) {
		return true
	}
	if match(c.denyNames, c.denySuffix) {
		return false
	}
	return c.internet
}

// defaultAccept reports whether packets no rule names are accepted.
func (c compiled) defaultAccept() bool { return c.internet }

// learns reports whether the resolver must open the addresses of allowed
// names: when the policy has name rules to let through.
func (c compiled) learns() bool { return len(c.allowNames)+len(c.allowSuffix) > 0 }
