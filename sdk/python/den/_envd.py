"""The envd protocol with Connect's JSON codec, I/O-free.

A sandbox's guest agent serves the Connect services ``process.Process`` and
``filesystem.Filesystem`` (protos in api/proto), proxied by the server under
``/v1/sandboxes/{id}/envd/``. Unary methods take and answer plain JSON
(``Content-Type: application/json``); server-streaming methods take one
envelope and answer a sequence of them (``application/connect+json``): a
flags byte, a big-endian uint32 length, the JSON message; the last envelope
has flag 0x02 and holds ``{}`` or ``{"error": {"code", "message"}}``.
Protobuf JSON names are lowerCamelCase, int64 values strings, bytes base64,
and zero values are left out.
"""

from __future__ import annotations

import base64
import codecs
import json
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import errors
from .models import CommandResult, EntryInfo, FilesystemEvent, OutputChunk, ProcessInfo, PtySize, from_json, parse_time

# MaxGuestMessage of the Go SDK: what a sandbox sends is untrusted, and a
# larger message is an error instead of memory.
MAX_GUEST_MESSAGE = 64 << 20

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02

# How often the guest sends a keepalive on a quiet stream (seconds), and the
# read timeout that follows from it: three missed keepalives mean the
# connection is gone.
KEEPALIVE_SECONDS = 30
STREAM_READ_TIMEOUT = 3 * KEEPALIVE_SECONDS + 5

# A command line runs with bash, found through PATH as a shell would; where
# the image has none (busybox), the guest says so before starting anything
# and the line runs with /bin/sh instead (see is_bash_missing). One process
# either way: a wrapper script that picked the shell cost a second exec.
SHELL = "bash"
FALLBACK_SHELL = "/bin/sh"

SIGNALS = {15: "SIGNAL_SIGTERM", 9: "SIGNAL_SIGKILL"}


def envelope(msg: Mapping[str, Any], flags: int = 0) -> bytes:
    """One Connect envelope holding msg as JSON."""
    data = json.dumps(msg, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(data)) + data


class EnvelopeDecoder:
    """Splits a Connect stream's bytes into its messages."""

    def __init__(self, max_message: int = MAX_GUEST_MESSAGE):
        self._buf = bytearray()
        self._max = max_message
        self.ended = False

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Yield the messages data completes. The end-of-stream envelope sets
        ended, or raises the APIError it carries."""
        self._buf += data
        while len(self._buf) >= 5 and not self.ended:
            flags, n = struct.unpack_from(">BI", self._buf)
            if n > self._max:
                raise errors.ProtocolError(f"the sandbox sent a message of {n} bytes, over the {self._max}-byte limit")
            if len(self._buf) < 5 + n:
                return
            payload = bytes(self._buf[5 : 5 + n])
            del self._buf[: 5 + n]
            if flags & FLAG_COMPRESSED:
                raise errors.ProtocolError("the sandbox sent a compressed message, which was not asked for")
            msg = _decode(payload)
            if flags & FLAG_END_STREAM:
                self.ended = True
                err = msg.get("error")
                if err:
                    raise errors.error_from_wire(err)
                return
            yield msg

    def finish(self, what: str) -> None:
        """Check that the stream ended with its end message."""
        if not self.ended:
            raise errors.ProtocolError(f"{what}: the stream ended without its end message")


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(payload) if payload else {}
    except ValueError as e:
        raise errors.ProtocolError(f"the sandbox sent malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise errors.ProtocolError("the sandbox sent a message that is not a JSON object")
    return msg


def stream_headers(timeout: float | None = None) -> tuple[tuple[str, str], ...]:
    """The headers of a server-streaming request."""
    h = [
        ("Content-Type", "application/connect+json"),
        ("Connect-Protocol-Version", "1"),
        ("Keepalive-Ping-Interval", str(KEEPALIVE_SECONDS)),
    ]
    if timeout is not None:
        h.append(("Connect-Timeout-Ms", str(max(1, int(timeout * 1000)))))
    return tuple(h)


UNARY_HEADERS = (("Connect-Protocol-Version", "1"),)


# ----- process ------------------------------------------------------------------


def argv(cmd: str | Sequence[str]) -> tuple[str, list[str]]:
    """The program and arguments of cmd: a string is a command line for bash
    (sh where there is no bash), a sequence an argv run as is."""
    if isinstance(cmd, str):
        return SHELL, ["-c", cmd]
    cmd = list(cmd)
    if not cmd or not all(isinstance(a, str) for a in cmd):
        raise ValueError(f"want a command line or a non-empty list of strings, got {cmd!r}")
    return cmd[0], cmd[1:]


def start_request(
    cmd: str | Sequence[str],
    *,
    envs: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tag: str | None = None,
    stdin: bool = False,
    pty: PtySize | None = None,
) -> dict[str, Any]:
    prog, args = argv(cmd)
    process: dict[str, Any] = {"cmd": prog, "args": args}
    if envs:
        process["envs"] = {str(k): str(v) for k, v in envs.items()}
    if cwd:
        process["cwd"] = cwd
    req: dict[str, Any] = {"process": process}
    if tag:
        req["tag"] = tag
    if stdin:
        req["stdin"] = True
    if pty is not None:
        req["pty"] = {"size": {"cols": int(pty.cols), "rows": int(pty.rows)}}
    return req


def is_bash_missing(err: Exception) -> bool:
    """Whether err is the guest's answer to a start of bash in an image
    without it."""
    return str(err).startswith(f'executable "{SHELL}" not found')


def with_fallback_shell(req: Mapping[str, Any]) -> dict[str, Any]:
    """req, a command line's start request, run with /bin/sh."""
    return {**req, "process": {**req["process"], "cmd": FALLBACK_SHELL}}


def selector(target: int | str) -> dict[str, Any]:
    """A ProcessSelector: an int is a PID, a str a tag."""
    if isinstance(target, bool) or not isinstance(target, (int, str)) or target == "":
        raise ValueError(f"want a PID (int) or a tag (str), got {target!r}")
    return {"pid": target} if isinstance(target, int) else {"tag": target}


def signal_name(sig: int) -> str:
    try:
        return SIGNALS[int(sig)]
    except KeyError:
        raise ValueError(f"the guest protocol carries SIGTERM (15) and SIGKILL (9), not {sig}") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(s: str) -> bytes:
    try:
        return base64.b64decode(s)
    except ValueError as e:
        raise errors.ProtocolError(f"the sandbox sent bad base64: {e}") from None


@dataclass
class Started:
    pid: int


@dataclass
class Ended:
    exit_code: int
    exited: bool
    status: str
    error: str


def process_event(msg: Mapping[str, Any]) -> Started | OutputChunk | Ended | None:
    """The event of a Start or Connect message; None for a keepalive."""
    ev = msg.get("event") or {}
    if "start" in ev:
        return Started(pid=int((ev["start"] or {}).get("pid", 0)))
    if "data" in ev:
        data = ev["data"] or {}
        for stream in ("stdout", "stderr", "pty"):
            if stream in data:
                return OutputChunk(stream=stream, data=unb64(data[stream]))
        return None
    if "end" in ev:
        end = ev["end"] or {}
        return Ended(
            exit_code=int(end.get("exitCode", 0)),
            exited=bool(end.get("exited", False)),
            status=str(end.get("status", "")),
            error=str(end.get("error", "")),
        )
    return None


class OutputCollector:
    """Collects a process's output and decodes it for the callbacks.

    add() returns the (callback, text) pairs to call for a chunk; PTY output
    goes to stdout. Text is decoded incrementally, so a character split
    across chunks arrives whole.
    """

    def __init__(
        self,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        keep: bool = True,
    ):
        self._cbs = {"stdout": on_stdout, "stderr": on_stderr}
        self._dec = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}
        self._keep = keep
        self.stdout = bytearray()
        self.stderr = bytearray()

    def add(self, chunk: OutputChunk) -> list[tuple[Callable[[str], Any], str]]:
        stream = "stderr" if chunk.stream == "stderr" else "stdout"
        if self._keep:
            (self.stderr if stream == "stderr" else self.stdout).extend(chunk.data)
        cb = self._cbs[stream]
        if cb is None:
            return []
        text = self._dec[stream].decode(chunk.data)
        return [(cb, text)] if text else []

    def flush(self) -> list[tuple[Callable[[str], Any], str]]:
        """The callbacks of what the decoders held back at the end."""
        out = []
        for stream, cb in self._cbs.items():
            if cb is not None:
                tail = self._dec[stream].decode(b"", final=True)
                if tail:
                    out.append((cb, tail))
        return out

    def result(self, end: Ended, pid: int) -> CommandResult:
        return CommandResult(
            stdout=self.stdout.decode("utf-8", "replace"),
            stderr=self.stderr.decode("utf-8", "replace"),
            exit_code=end.exit_code,
            exited=end.exited,
            status=end.status,
            error=end.error,
            pid=pid,
        )


def process_info(p: Mapping[str, Any]) -> ProcessInfo:
    cfg = p.get("config") or {}
    return ProcessInfo(
        pid=int(p.get("pid", 0)),
        tag=str(p.get("tag", "")),
        cmd=str(cfg.get("cmd", "")),
        args=list(cfg.get("args") or []),
        envs=dict(cfg.get("envs") or {}),
        cwd=str(cfg.get("cwd", "")),
    )


# ----- filesystem ----------------------------------------------------------------

_FILE_TYPES = {
    "FILE_TYPE_FILE": "file",
    1: "file",
    "FILE_TYPE_DIRECTORY": "dir",
    2: "dir",
    "FILE_TYPE_SYMLINK": "symlink",
    3: "symlink",
}

_EVENT_OPS = {
    "EVENT_TYPE_CREATE": "create",
    1: "create",
    "EVENT_TYPE_WRITE": "write",
    2: "write",
    "EVENT_TYPE_REMOVE": "remove",
    3: "remove",
    "EVENT_TYPE_RENAME": "rename",
    4: "rename",
    "EVENT_TYPE_CHMOD": "chmod",
    5: "chmod",
}


def entry(e: Mapping[str, Any]) -> EntryInfo:
    info = from_json(EntryInfo, {k: v for k, v in e.items() if k in ("name", "path", "permissions", "owner", "group")})
    info.type = _FILE_TYPES.get(e.get("type", 0), "other")
    info.size = int(e.get("size", 0))
    info.mode = int(e.get("mode", 0))
    info.modified_time = parse_time(e.get("modifiedTime"))
    info.symlink_target = str(e.get("symlinkTarget", ""))
    return info


def watch_event(msg: Mapping[str, Any]) -> FilesystemEvent | bool | None:
    """A WatchDir message: True for the start, the event of a change, None for
    a keepalive."""
    if "start" in msg:
        return True
    fe = msg.get("filesystem")
    if fe is None:
        return None
    ent = fe.get("entry")
    return FilesystemEvent(
        name=str(fe.get("name", "")),
        op=_EVENT_OPS.get(fe.get("type", 0), "unknown"),
        entry=entry(ent) if ent else None,
    )
