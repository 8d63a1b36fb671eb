package rest

// NetworkPolicy is a sandbox's egress policy: the body of PUT
// /v1/sandboxes/{id}/network, and the "network" of a create and of a
// sandbox. Rules are IPv4 addresses or CIDRs, domains ("example.com": that
// name) or "*.example.com" (its subdomains). Every sandbox is refused den's
// own addresses, the host, link-local (cloud metadata) and private ranges
// unless a CIDR rule allows them; then allow rules accept, deny rules
// drop, and the rest follows Internet (allow wins over deny, as E2B's
// allowOut over denyOut: "only these" is Internet false with allow rules).
// Names are checked by den's DNS resolver: a name the policy refuses does
// not resolve, and an allowed name's addresses open only once resolved
// through it, so an address looked up elsewhere stays shut.
type NetworkPolicy struct {
	// Internet defaults to true.
	Internet *bool    `json:"internet,omitempty"`
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// InternetOn is Internet with its default.
func (p NetworkPolicy) InternetOn() bool { return p.Internet == nil || *p.Internet }

// MaxPublicPorts bounds a sandbox's PublicPorts.
const MaxPublicPorts = 64

// PortAccessRequest makes a port of a sandbox public or private (PUT
// /v1/sandboxes/{id}/ports/{port}; port 0 is every port).
type PortAccessRequest struct {
	Public bool `json:"public"`
}
