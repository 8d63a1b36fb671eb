// Package qemu is den's microVM runtime driver: each sandbox is a QEMU
// `microvm` machine booting a Debian cloud kernel (internal/vmkernel)
// whose init is den's guest agent. The agent's channel is a
// virtio-serial port served by QEMU on a unix socket, over which yamux
// carries one stream per connection (channel.go).
//
// Create runs named steps (create.go): find the guest kernel and its
// initramfs, prepare the root disk (the image's layers merged by a
// read-only overlayfs mount and written into an ext4 file of the
// sandbox's disk size, cached per image and size), make the sandbox's
// directory, create its qcow2 overlay on that disk, start QEMU (its own
// session, so VMs outlive den), write den.json, wait for the agent over
// the channel (restarting a boot that stalls before its first console
// line) and send it the env and hostname (POST /init).
//
// Work in progress (issue 6): the driver creates, runs commands in,
// recovers and destroys VMs; it does not yet pass the conformance suite
// (limits, stats, wait, snapshots, networking), and the node does not use
// it yet (runtime selection).
package qemu
