package vmkernel

import (
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format, the one the
// Linux kernel unpacks as an initramfs.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

// File modes of cpio entries.
const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChr  = 0o020000
)

// header writes one entry header and its name.
func (c *cpioWriter) header(name string, mode uint32, size int, rmajor, rminor uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad writes the zeros that align n bytes to 4.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// dir adds a directory.
func (c *cpioWriter) dir(name string, perm uint32) { c.header(name, cpioDir|perm, 0, 0, 0) }

// file adds a regular file with data.
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.header(name, cpioFile|perm, len(data), 0, 0)
	c.write(data)
	c.pad(len(data))
}

// chardev adds a character device node.
func (c *cpioWriter) chardev(name string, perm, major, minor uint32) {
	c.header(name, cpioChr|perm, 0, major, minor)
}

// close writes the trailer and reports the first error.
func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}

// checkName rejects names the archive must not hold.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return fmt.Errorf("initramfs: bad entry name %q", name)
	}
	return nil
}
