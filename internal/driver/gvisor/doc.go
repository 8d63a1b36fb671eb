// Package gvisor is the gVisor (runsc) driver of den: each sandbox is a runsc
// sandbox whose PID 1 is the den guest agent.
//
// # Host layout
//
// Everything lives under Config.StateDir:
//
//	runsc/             runsc --root (runsc's own container state)
//	sandboxes/<id>/    one directory per sandbox, also its OCI bundle:
//	    config.json    the OCI spec this package generates
//	    den.json       what Recover and Status need (the Handle state)
//	    upper/ work/   host overlayfs upper and work dirs (mount points only)
//	    init/          with an UpperDir only: the init layer (see below)
//	    rootfs/        host overlayfs: image layers (read-only) + upper/
//	    filestore/     gVisor's rootfs overlay filestore (the writable layer)
//	    run/           bind-mounted at /.den/run; holds guest.sock
//	    runsc.log      runsc and sandbox stdio
//	spares/<instance>/ warm spares of one driver instance (see below)
//
// Every path is derived from the sandbox ID, so Destroy, Status and DialGuest
// work without in-memory state, for example after the agent restarted. The
// runsc container of sandbox <id> is named "<id>+" (runtimeIDFor): runsc
// resolves container IDs by prefix, and '+', which sandbox IDs never hold,
// keeps one sandbox's container ID from being a prefix of another's.
//
// # Guest channel
//
// The host reaches the guest agent over a unix socket that the agent itself
// creates: the per-sandbox host directory run/ is bind-mounted at /.den/run
// and runsc runs with --host-uds=create, which lets a process in the sandbox
// bind(2) a socket on a gofer (host-backed) mount so that it is a real,
// listening unix socket on the host. The agent listens on
// /.den/run/guest.sock; DialGuest connects to <state>/sandboxes/<id>/run/guest.sock.
// It does not use the sandbox network (which is --network=none: loopback only).
//
// # Root filesystem and disk quota
//
// The image layers are combined read-only by a host overlayfs mount whose
// upper directory only ever receives the mount points runsc creates
// (/.den/...): gVisor's gofer creates those on the host side, and without the
// host overlay it would write them into the shared image layer. The sandbox's
// writes go to gVisor's own rootfs overlay (--overlay2=root:dir=...,size=N):
// a tmpfs inside the sentry backed by a host file in filestore/, whose size
// option is enforced by the sentry (writes past DiskMB fail with ENOSPC).
// That costs nothing at create time, unlike a loop-mounted ext4 upper layer
// (truncate+mkfs.ext4+mount measured at ~60 ms here, most of a sandbox start).
// gVisor mounts an unlimited internal tmpfs on /tmp when the image's /tmp is
// empty; the driver puts a marker file in the upper /tmp so /tmp stays on the
// quota-limited root overlay.
//
// # Caller's upper directory
//
// A Spec with an UpperDir (for Dockerfile RUN steps, whose changes become
// an image layer) turns that around: the host overlay's upper directory is
// the caller's, it is mounted with redirect_dir, metacopy and index off so
// that the upper holds a plain layer diff, and runsc runs with
// --overlay2=none, so the sandbox's root filesystem writes reach the host
// overlay through the gofer (directfs: the sentry's host file descriptors)
// and the host kernel records them in upper format: whiteouts, opaque
// directories, copied-up files with their new owner and mode. No quota
// applies. Nothing but the sandbox's own changes may land there, so the
// mount points runsc needs and the /tmp marker live in init/, a read-only
// layer on top of the image's (Docker's "-init" layer). Such sandboxes
// never come from, nor go into, the warm pool. Destroy unmounts the
// overlay and removes the sandbox directory; UpperDir, outside it, stays.
//
// # Resource limits
//
// runsc places the sandbox (sentry and gofer) in the cgroup named by the OCI
// spec's linux.cgroupsPath (<CgroupParent>/<id>) and applies linux.resources
// there: memory limit = MemoryMB, pids = Config.PidsLimit host tasks. The
// CPU quota (CPUs) is den's to write once the guest agent answers after a
// start, resume or clone (cpulimit.go): a boot or restore is the platform's
// multi-threaded work and is not throttled to the sandbox's share. The sentry has no OOM killer of its own, so a sandbox that
// allocates past its limit meets the host's memcg OOM killer (only this
// sandbox's cgroup is affected). That kills one task: the sentry, the gofer
// or a systrap stub process (it maps the guest's memory, so it is often the
// largest), and the sentry may outlive the last two in a state that depends
// on timing. Wait therefore stops the whole sandbox once the cgroup counts
// an OOM kill (it looks twice a second); Status then reports Running=false
// with Reason "oom".
//
// The guest agent has an OOM killer of its own (den-guest
// --memory-limit-mb, see internal/guest/oom.go) that kills the largest
// process tree inside the sandbox, but the driver does not turn it on yet:
// measured here, it contains allocations that grow in steps (a pipe into
// tail: 5/5 killed inside), but not a single multi-GiB syscall (dd bs=4G
// reads /dev/zero in one uninterruptible sentry zero-fill that SIGKILL
// cannot stop, so the host charge passes any modest headroom), nor a fork
// bomb, whose cost is sentry and host memory that no guest RSS shows.
//
// # Warm pool
//
// With Config.WarmPool = N the driver keeps N started, never-used spare
// sandboxes for each of the 2 most recently created shapes (everything
// fixed when runsc boots: image layers, user, working dir and env, CPUs,
// memory, disk). Create claims a spare of its spec's shape when one is
// ready, in a few milliseconds instead of a runsc start: it sends the
// spec's env and hostname to the guest agent (internal POST /init), writes
// the state and renames the spare's directory to sandboxes/<id> (mounts,
// socket and filestore move with it). A claimed sandbox keeps the spare's
// runsc container ID and cgroup name, recorded in den.json as RuntimeID.
// When no spare is ready Create starts cold and never waits. A single
// goroutine owned by the pool then refills, one boot at a time. Spares live
// under spares/<instance>/, flock(2)ed by the live instance: Close destroys
// them, and New destroys those of instances that died. Spares pin their
// image layers while they wait.
//
// # Suspend, resume and clone
//
// driver.Suspender is runsc checkpoint and restore (suspend.go,
// restore.go). A checkpoint holds the sandbox's memory, its processes and
// its root filesystem writes (the rootfs overlay lives in sentry memory);
// the host overlay of image layers is not in it and must be there, at the
// same paths, to restore. The guest agent closes its host socket before a
// checkpoint and listens again by itself once it is done (see suspend.go;
// older agents need a hook that runsc runs after each restore). A
// suspended sandbox keeps its directory and rootfs mount (which also keeps image GC off its layers) but no runsc
// container, cgroup or process; den.json says so (Phase). Resume restores
// it in place; Clone builds a new sandbox directory as Create does and
// restores into it, then sets its hostname. Sandboxes with an UpperDir
// cannot be checkpointed.
//
// # Lifetime
//
// runsc is started in its own session with stdio redirected to runsc.log
// (never pipes: the sandbox inherits them), so sandboxes outlive the den
// process, and a new Driver with the same Config reattaches through Recover.
package gvisor
