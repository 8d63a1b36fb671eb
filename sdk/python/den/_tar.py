"""Tar streams: packing a local directory as it is sent, and unpacking an
archive from a sandbox without letting it write outside its destination."""

from __future__ import annotations

import os
import posixpath
import secrets
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ._dockerignore import Ignore, PatternMatcher, read_patterns
from .errors import DenError

BLOCK = 512
CHUNK = 256 << 10


class UnsafeArchiveError(DenError):
    """An archive from a sandbox holds an entry that would land outside the
    destination (an absolute or ``..`` name, a link pointing out) or one that
    is not a file, directory or link."""


@dataclass(frozen=True)
class Entry:
    """One local file, directory or symbolic link to send, under name."""

    path: str
    name: str
    st: os.stat_result


def walk(root: str | os.PathLike[str], ignore: Ignore | None = None) -> Iterator[Entry]:
    """The entries below root, parents first, in name order, without
    following symbolic links; sockets, devices and FIFOs are left out, as
    docker does."""
    root = os.fspath(root)

    def visit(dirpath: str, rel: str) -> Iterator[Entry]:
        with os.scandir(dirpath) as it:
            names = sorted(it, key=lambda e: e.name)
        for de in names:
            name = f"{rel}/{de.name}" if rel else de.name
            st = de.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if ignore is not None:
                skip, skip_below = ignore.check(name, is_dir)
                if skip_below:
                    continue
            else:
                skip = False
            if not (is_dir or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            if not skip:
                yield Entry(de.path, name, st)
            if is_dir:
                yield from visit(de.path, name)

    yield from visit(root, "")


def header(e: Entry) -> bytes:
    """The tar header of an entry, without owner: the receiver decides."""
    ti = tarfile.TarInfo(e.name)
    ti.mode = stat.S_IMODE(e.st.st_mode)
    ti.mtime = int(e.st.st_mtime)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if stat.S_ISDIR(e.st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(e.st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(e.path)
    else:
        ti.type = tarfile.REGTYPE
        ti.size = e.st.st_size
    return ti.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def stream(entries: Iterator[Entry]) -> Iterator[bytes]:
    """A tar archive of entries, produced as it is read: chunks of about
    CHUNK bytes, never a whole file in memory. A file that changes size while
    it is read is cut or padded to the size in its header."""
    buf = bytearray()
    for e in entries:
        buf += header(e)
        if stat.S_ISREG(e.st.st_mode):
            left = e.st.st_size
            with open(e.path, "rb") as f:
                while left > 0:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        data = bytes(min(CHUNK, left))
                    buf += data
                    left -= len(data)
                    if len(buf) >= CHUNK:
                        yield bytes(buf)
                        buf.clear()
            buf += bytes(-e.st.st_size % BLOCK)
        if len(buf) >= CHUNK:
            yield bytes(buf)
            buf.clear()
    buf += bytes(2 * BLOCK)
    yield bytes(buf)


class BuildContext:
    """A build context directory about to be sent as a tar, as the Go SDK
    sends it: what .dockerignore names is left out, the Dockerfile and
    .dockerignore always go, and a Dockerfile outside the directory is sent
    along under a fresh name."""

    def __init__(self, context_dir: str | os.PathLike[str], dockerfile: str | os.PathLike[str] | None = None):
        d = Path(context_dir).resolve()
        if not d.exists():
            raise FileNotFoundError(f"build context {d} does not exist")
        if not d.is_dir():
            raise NotADirectoryError(f"build context {d} is not a directory")
        self.dir = d
        self.dockerfile = "Dockerfile"
        self.outside: Path | None = None
        if dockerfile:
            self._place(Path(dockerfile))
        matcher = None
        ignore_file = d / ".dockerignore"
        if ignore_file.is_file():
            matcher = PatternMatcher(read_patterns(ignore_file.read_text(encoding="utf-8", errors="surrogateescape")))
        self.ignore = Ignore(matcher, self.dockerfile)

    def _place(self, dockerfile: Path) -> None:
        p = dockerfile if dockerfile.is_absolute() else self.dir / dockerfile
        p = p.resolve()
        if not p.is_file():
            raise FileNotFoundError(f"dockerfile {p} does not exist")
        try:
            rel = p.relative_to(self.dir)
        except ValueError:
            self.outside = p
            self.dockerfile = ".den-dockerfile-" + secrets.token_hex(6)
        else:
            self.dockerfile = rel.as_posix()

    def entries(self) -> Iterator[Entry]:
        yield from walk(self.dir, self.ignore)
        if self.outside is not None:
            yield Entry(str(self.outside), self.dockerfile, os.stat(self.outside))

    def stream(self) -> Iterator[bytes]:
        return stream(self.entries())


def _inside(name: str) -> bool:
    n = posixpath.normpath(name)
    return not (name.startswith("/") or n == ".." or n.startswith("../"))


def check_member(m: tarfile.TarInfo) -> None:
    """Raise UnsafeArchiveError unless m stays inside the destination."""
    if not _inside(m.name):
        raise UnsafeArchiveError(f"archive entry {m.name!r} would be written outside the destination")
    if m.issym():
        target = posixpath.join(posixpath.dirname(m.name), m.linkname)
        if m.linkname.startswith("/") or not _inside(target):
            raise UnsafeArchiveError(f"archive entry {m.name!r} links outside the destination (to {m.linkname!r})")
    elif m.islnk():
        if not _inside(m.linkname):
            raise UnsafeArchiveError(f"archive entry {m.name!r} links outside the destination (to {m.linkname!r})")
    elif not (m.isreg() or m.isdir()):
        raise UnsafeArchiveError(f"archive entry {m.name!r} is not a file, directory or link")


def _plain(m: tarfile.TarInfo) -> bool:
    """Whether m is a file, directory or link: named pipes and device nodes
    are left out of a download (as Harbor's own extraction does), not
    created on the caller's machine."""
    return m.isreg() or m.isdir() or m.issym() or m.islnk()


def extract(fileobj: IO[bytes], dest: str | os.PathLike[str]) -> None:
    """Unpack a tar into dest (created when missing), refusing entries that
    would land outside it and leaving out named pipes and devices. Files get their permission bits (setuid, setgid
    and sticky dropped) and belong to the caller, not the archive's owners."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=fileobj, mode="r:") as tf:
        members = [m for m in tf.getmembers() if _plain(m)]
        for m in members:
            check_member(m)
        if hasattr(tarfile, "data_filter"):

            def keep(m: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
                # tar_filter re-checks against the disk (a name through a
                # link unpacked before it); its mode changes are not taken.
                tarfile.tar_filter(m, path)
                mode = None if m.issym() else stat.S_IMODE(m.mode) & 0o777
                return m.replace(uid=None, gid=None, uname=None, gname=None, mode=mode, deep=False)  # type: ignore[arg-type]

            try:
                tf.extractall(dest, members=members, filter=keep)
            except tarfile.FilterError as e:
                raise UnsafeArchiveError(f"archive entry {e.tarinfo.name!r}: {e}") from None
        else:  # Python < 3.11.4: no filters; the checks above are what guards
            for m in members:
                m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
                m.mode = stat.S_IMODE(m.mode) & 0o777
            tf.extractall(dest, members=members)
