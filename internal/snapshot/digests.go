package snapshot

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// Digests of sealed files, remembered for as long as this process runs:
// Seal hashes every file and Verify hashes them all again before the
// snapshot is used, which for a fork (seal, then verify at once) read
// hundreds of MiB twice. A file whose inode, size, modification and
// change times are what they were when it was hashed is not hashed
// again: any write to it, or its replacement, changes them. A new
// process (a restarted den) hashes everything once more.

// fileStamp identifies a version of a file's content by its metadata.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// maxDigests bounds the remembered digests; past it they are forgotten
// all at once (a later Verify hashes again).
const maxDigests = 4096

var digests = struct {
	sync.Mutex
	m map[fileStamp]string
}{m: map[fileStamp]string{}}

// stampOf is f's stamp; false when the platform does not say.
func stampOf(fi os.FileInfo) (fileStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// settleTime is how long after its last change a file's stamp is
// trusted: file times come from a coarse clock, so a write within the same
// tick as the one before it would leave the stamp unchanged.
const settleTime = 20 * time.Millisecond

// settled reports whether the file stamped s last changed long enough ago
// for its stamp to tell a later write apart.
func settled(s fileStamp) bool {
	return time.Since(time.Unix(0, s.ctime)) >= settleTime && time.Since(time.Unix(0, s.mtime)) >= settleTime
}

// rememberDigest records the sha256 of the content stamped s.
func rememberDigest(s fileStamp, sum string) {
	digests.Lock()
	defer digests.Unlock()
	if len(digests.m) >= maxDigests {
		digests.m = map[fileStamp]string{}
	}
	digests.m[s] = sum
}

// knownDigest is the remembered sha256 of the content stamped s.
func knownDigest(s fileStamp) (string, bool) {
	digests.Lock()
	defer digests.Unlock()
	sum, ok := digests.m[s]
	return sum, ok
}
