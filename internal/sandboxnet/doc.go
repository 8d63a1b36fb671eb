// Package sandboxnet gives each sandbox its own network: a network
// namespace with one interface, eth0, whose peer on the host routes and
// NATs its traffic, and an nftables table that enforces the sandbox's
// egress policy.
//
// Addresses. A Manager owns one /16 (Config.CIDR; by default the first of
// 10.88.0.0/16 ... 10.127.0.0/16 that no host route overlaps, kept across
// restarts) cut into /30 slots: slot n is 10.X.(4n/256).(4n%256) + 0..3,
// its host end .1, the sandbox .2. Slot 0 is den's: its .1, the DNS
// address, sits on the host's lo and is every sandbox's resolver.
//
// Names. Host ends of sandboxes' interfaces are named dn<inst>-<slot>,
// where inst is four hex digits of the state directory's hash, so that
// several dens on one host (tests) keep apart; the nftables table is
// den_<inst>.
//
// Policy (Policy). Always refused: den's /16 (other sandboxes; only the
// DNS address's port 53 answers), the host's own addresses (input chain),
// link-local and metadata addresses, loopback, multicast and the private
// ranges, unless an allow rule names them (den's /16 never). Then, in
// order: allowed CIDRs and the addresses the resolver learned for allowed
// names accept; denied CIDRs drop; the rest follows Internet. Allow rules
// thus win over deny rules, as E2B's allowOut over denyOut, and "only
// these" is the internet off with allow rules. Names are checked by den's
// resolver: an allowed name resolves, then a denied one is NXDOMAIN, then
// the rest follows Internet; nothing refused is asked upstream. IPv6 is
// dropped.
//
// Lifetime. Setup makes a slot for an ID (a sandbox, or a driver's spare),
// Rename moves it to another ID (a claimed spare), Teardown removes it.
// Slots are recorded under Config.StateDir, so a restarted den finds them;
// Open rebuilds the nftables table from the records.
package sandboxnet
