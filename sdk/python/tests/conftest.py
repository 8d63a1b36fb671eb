"""Fixtures: one real `den up` for the session (unless DEN_URL names a den
already running), clients of both faces, and one sandbox per face that the
tests share where sharing is honest (tests that change a sandbox's state
make their own).

den up runs with --no-base: sandboxes use the busybox image every den
records at its start (no network, no base image build).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

import den

REPO = Path(__file__).resolve().parents[3]
IMAGE = "busybox"


@dataclass
class Server:
    url: str
    api_key: str
    sandbox_url: str | None
    data_dir: Path | None
    log: Path | None


def _den_bin() -> Path:
    p = Path(os.environ.get("DEN_BIN") or REPO / "bin" / "den")
    if not p.exists():
        pytest.fail(f"den binary not found at {p}: run `make build` or set DEN_BIN (or point DEN_URL at a running den)")
    for name in ("runsc", "den-guest"):
        if not (p.parent / name).exists():
            pytest.fail(f"{name} not found next to {p}: run `make build`")
    return p


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], Server]:
    data, log = tmp / "data", tmp / "den.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEN_", "E2B_"))}
    with open(log, "wb") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [str(_den_bin()), "up", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--no-base"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            start_new_session=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # reads den's stdout to its end, so den never blocks on it
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace").strip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while not {"DEN_URL", "DEN_API_KEY", "E2B_SANDBOX_URL"} <= got.keys():
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"den up printed no DEN_URL within 60s:\n{log.read_text()[-3000:]}")
        if line is None:
            pytest.fail(f"den up exited ({proc.wait()}) before printing DEN_URL:\n{log.read_text()[-3000:]}")
        k, sep, v = line.partition("=")
        if sep:
            got[k] = v
    return proc, Server(got["DEN_URL"], got["DEN_API_KEY"], got["E2B_SANDBOX_URL"], data, log)


def _remove_all(s: Server) -> None:
    with den.Client(s.url, s.api_key) as c:
        for sb in list(c.sandboxes.list()):
            sb.kill()
        for p in c.pools.list():
            c.pools.delete(p.id)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("den up did not exit within 20s of an interrupt")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("DEN_URL"):
        dd = os.environ.get("DEN_DATA_DIR")
        yield Server(os.environ["DEN_URL"], os.environ.get("DEN_API_KEY", ""), os.environ.get("E2B_SANDBOX_URL"), Path(dd) if dd else None, None)
        return
    proc, s = _start(tmp_path_factory.mktemp("den"))
    try:
        yield s
    finally:
        try:
            _remove_all(s)
        finally:
            _stop(proc)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[den.Client]:
    with den.Client(server.url, server.api_key, sandbox_url=server.sandbox_url) as c:
        yield c


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def aclient(server: Server) -> AsyncIterator[den.AsyncClient]:
    async with den.AsyncClient(server.url, server.api_key, sandbox_url=server.sandbox_url) as c:
        yield c


@pytest.fixture(scope="session")
def sb(client: den.Client) -> Iterator[den.Sandbox]:
    """A busybox sandbox the sync tests share; tests that change its state
    (suspend, network, ports) make their own."""
    with den.Sandbox.create(IMAGE, client=client, timeout=900, metadata={"suite": "python-sdk", "face": "sync"}) as s:
        yield s


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def asb(aclient: den.AsyncClient) -> AsyncIterator[den.AsyncSandbox]:
    async with await den.AsyncSandbox.create(IMAGE, client=aclient, timeout=900, metadata={"suite": "python-sdk", "face": "async"}) as s:
        yield s


def wait_for(pred, what: str, timeout: float = 30.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll pred() until it returns a truthy value (returned) or fail after
    timeout seconds: synchronisation by deadline, never by sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


async def await_for(pred, what: str, timeout: float = 30.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    """wait_for for coroutine predicates."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        v = await pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)
