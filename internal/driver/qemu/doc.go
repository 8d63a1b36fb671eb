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
// directory, create its qcow2 overlay on that disk, wait for a boot slot
// (Config.MaxBoots: boots are CPU-bound), start QEMU (its own session, so
// VMs outlive den), write den.json, wait for the agent over the channel
// (restarting a boot that stalls before its first console line), record
// where the boot's time went (boottiming.go) and send the agent the env
// and hostname (POST /init). Under TCG the kernel is told the host's TSC
// frequency, without which about one boot in four hung calibrating it.
//
// Wait watches QEMU through a pidfd; a VM whose init (the agent) died
// stops with a guest kernel panic, which becomes the reason. Stats are
// the host's view: QEMU's CPU time and resident memory, the overlay's
// blocks. Recover takes the agent channel over with QMP chardev-change
// (QEMU serves one client per socket). The driver has no UpperDir
// (Capabilities().UpperDir is false): image builds and filesystem
// snapshots run on gVisor.
//
// Checkpoints (Suspend, Checkpoint, Resume, Clone; suspend.go): a VM's
// RAM is a file mapped share=on, so a checkpoint is that file, the disk
// overlay and a QEMU migration stream of the devices that skips the RAM
// (x-ignore-shared); a resume loads the stream into a QEMU started with
// -incoming, and a clone maps the checkpoint's RAM file share=off
// (copy-on-write).
//
// Not yet: networking (the VM has no NIC), warm pools.
package qemu
