"""The state of the streams a caller iterates at its own pace (a started or
attached process, a watch), with their steps as ops; both faces wrap these."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import _envd as envd
from . import _ops as ops
from ._core import Op, callback, close
from .errors import DeadlineExceededError, ProtocolError, TimeoutError
from .models import CommandResult, FilesystemEvent, OutputChunk, PtySize


class ProcessSession:
    """A process stream being read: its output so far and, once it ended,
    its result."""

    def __init__(self, sandbox_id: str, user: str | None, reader: ops.MessageReader, pid: int, *, pty: bool, timeout: float | None):
        self.sandbox_id = sandbox_id
        self.user = user
        self.reader = reader
        self.pid = pid
        self.pty = pty
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.collector = envd.OutputCollector()
        self.result: CommandResult | None = None
        self.closed = False

    def next_chunk(self) -> Op[OutputChunk | None]:
        """The next piece of output; None once the process ended (result set)."""
        if self.result is not None or self.closed:
            return None
        try:
            ev = yield from ops.next_process_event(self.reader)
        except DeadlineExceededError:
            self.closed = True
            raise TimeoutError(f"command timed out after {self.timeout:g}s (killed)") from None
        if ev is None:
            raise ProtocolError(f"process {self.pid}: the stream ended without its exit status")
        if isinstance(ev, OutputChunk):
            self.collector.add(ev)
            return ev
        if isinstance(ev, envd.Ended):
            self.result = self.collector.result(ev, self.pid)
            self.closed = True
            yield close(self.reader.handle)
            if self.timeout is not None and not ev.exited and time.monotonic() - self.t0 >= self.timeout:
                raise TimeoutError(f"command timed out after {self.timeout:g}s (killed)")
        return None

    def wait(self, on_stdout: Callable[[str], Any] | None, on_stderr: Callable[[str], Any] | None) -> Op[CommandResult]:
        """Read to the end, handing the output still to come to the callbacks."""
        cbs = envd.OutputCollector(on_stdout, on_stderr, keep=False)
        while True:
            chunk = yield from self.next_chunk()
            if chunk is None:
                break
            for cb, text in cbs.add(chunk):
                yield callback(cb, text)
        for cb, text in cbs.flush():
            yield callback(cb, text)
        if self.result is None:
            raise ProtocolError(f"process {self.pid}: the stream was closed before the process ended")
        return self.result

    def send_stdin(self, data: bytes | str) -> Op[None]:
        yield from ops.send_input(self.sandbox_id, self.pid, data.encode() if isinstance(data, str) else bytes(data), self.user, pty=self.pty)

    def close_stdin(self) -> Op[None]:
        yield from ops.close_stdin(self.sandbox_id, self.pid, self.user)

    def signal(self, sig: int) -> Op[None]:
        yield from ops.send_signal(self.sandbox_id, self.pid, sig, self.user)

    def kill(self) -> Op[bool]:
        return (yield from ops.kill_process(self.sandbox_id, self.pid, self.user))

    def resize(self, cols: int, rows: int) -> Op[None]:
        yield from ops.resize_pty(self.sandbox_id, self.pid, PtySize(cols, rows), self.user)


class WatchSession:
    """A watch being read."""

    def __init__(self, reader: ops.MessageReader, path: str):
        self.reader = reader
        self.path = path
        self.closed = False

    def next_event(self) -> Op[FilesystemEvent | None]:
        if self.closed:
            return None
        ev = yield from ops.next_watch_event(self.reader)
        if ev is None:
            self.closed = True
        return ev
