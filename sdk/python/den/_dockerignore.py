""".dockerignore matching, as `docker build` and den's Go SDK do it.

A port of github.com/moby/patternmatcher (v0.6.0: PatternMatcher and
ignorefile.ReadAll) for slash-separated paths, so a build context sent from
Python leaves out exactly what the Go SDK and the den CLI leave out.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

_ESCAPE = set(".+()|{}$")


def clean(p: str) -> str:
    """Go's path.Clean: posixpath.normpath, with a leading // made /."""
    c = posixpath.normpath(p)
    if c.startswith("//"):
        c = "/" + c.lstrip("/")
    return c


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file (ignorefile.ReadAll)."""
    out = []
    for n, line in enumerate(text.splitlines()):
        if n == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


@dataclass
class Pattern:
    """One pattern; exclusion patterns start with ! and let paths back in."""

    cleaned: str
    exclusion: bool
    dirs: list[str] = field(default_factory=list)
    _kind: str = ""
    _re: re.Pattern[str] | None = None

    def match(self, path: str) -> bool:
        if not self._kind:
            self._compile()
        if self._kind == "exact":
            return path == self.cleaned
        if self._kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self._kind == "suffix":
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self._re is not None
        return self._re.match(path) is not None

    def _compile(self) -> None:
        reg = "^"
        p = self.cleaned
        kind = "exact"
        pos, n, it = 0, len(p), 0
        while pos < n:
            ch = p[pos]
            pos += 1
            if ch == "*":
                if pos < n and p[pos] == "*":
                    pos += 1
                    if pos < n and p[pos] == "/":
                        pos += 1
                    if pos >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            reg += ".*"
                            kind = "regexp"
                    else:
                        reg += "(.*/)?"
                        kind = "regexp"
                    if it == 0:
                        kind = "suffix"
                else:
                    reg += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                reg += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPE:
                reg += "\\" + ch
            elif ch == "\\":
                if pos < n:
                    reg += "\\" + p[pos]
                    pos += 1
                    kind = "regexp"
                else:
                    reg += "\\"
            elif ch in "[]":
                reg += ch
                kind = "regexp"
            else:
                reg += ch
            it += 1
        self._kind = kind
        if kind == "regexp":
            try:
                self._re = re.compile(reg + "$", re.DOTALL)
            except re.error as e:
                raise ValueError(f".dockerignore: bad pattern {self.cleaned!r}: {e}") from None


class PatternMatcher:
    """The patterns of a .dockerignore, matched in order (the last match wins)."""

    def __init__(self, patterns: list[str]):
        self.patterns: list[Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise ValueError('.dockerignore: illegal exclusion pattern: "!"')
                p = p[1:]
            pat = Pattern(cleaned=p, exclusion=exclusion, dirs=p.split("/"))
            pat.match(".")  # compile now: a bad pattern fails here
            self.patterns.append(pat)

    def matches_using_parent_results(self, file: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """Whether file is excluded, given its parent directory's results
        (None for a top-level entry); returns the results for its children."""
        if parent is not None and len(parent) != len(self.patterns):
            raise ValueError("wrong number of values in parent results")
        matched = False
        info = [False] * len(self.patterns)
        for i, pat in enumerate(self.patterns):
            match = parent[i] if parent else False
            if not match:
                if pat.exclusion != matched:
                    continue
                match = pat.match(file)
                if not match and not parent:
                    parent_path = posixpath.dirname(file)
                    if parent_path:
                        dirs = parent_path.split("/")
                        for j in range(len(dirs)):
                            if pat.match("/".join(dirs[: j + 1])):
                                match = True
                                break
            info[i] = match
            if match:
                matched = not pat.exclusion
        return matched, info


class Ignore:
    """What a build context leaves out, walking it top-down (the Go SDK's
    buildContext.ignored): the Dockerfile and .dockerignore are always sent."""

    def __init__(self, matcher: PatternMatcher | None, dockerfile: str):
        self.matcher = matcher
        self.dockerfile = dockerfile
        self._parents: dict[str, list[bool]] = {}

    def check(self, rel: str, is_dir: bool) -> tuple[bool, bool]:
        """(skip the entry, skip everything below it) for the slash-separated
        path rel; walk parents before their children."""
        m = self.matcher
        if m is None or rel == self.dockerfile or rel == ".dockerignore":
            return False, False
        parent = posixpath.dirname(rel) or "."
        skip, info = m.matches_using_parent_results(rel, self._parents.get(parent))
        if is_dir:
            self._parents[rel] = info
        if not skip or not is_dir:
            return skip, False
        # A "!" pattern may let something below an excluded directory back in.
        prefix = rel + "/"
        for pat in m.patterns:
            if pat.exclusion and (pat.cleaned + "/").startswith(prefix):
                return True, False
        if self.dockerfile.startswith(prefix) or ".dockerignore".startswith(prefix):
            return True, False
        return True, True
