// Package qemu is den's microVM runtime driver: each sandbox is a QEMU
// `microvm` machine booting a Debian cloud kernel (internal/vmkernel)
// whose init is den's guest agent. The agent's channel is a
// virtio-serial port served by QEMU on a unix socket, over which yamux
// carries one stream per connection (channel.go).
//
// Work in progress: the channel is built and tested against a real VM
// under TCG; the driver.Driver implementation is not written yet.
package qemu
