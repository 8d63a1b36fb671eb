"""The issue-3 scenario with the asynchronous `e2b.AsyncSandbox` client."""

import asyncio
import hashlib
import os
import time
import uuid

import pytest

from e2b import (
    AsyncSandbox,
    AuthenticationException,
    CommandExitException,
    FileType,
    FilesystemEventType,
    NotFoundException,
    PtySize,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    TimeoutException,
)

from conftest import BAD_KEY, RUN_ID, TEMPLATE, create_async

pytestmark = pytest.mark.asyncio(loop_scope="module")
UNKNOWN_ID = "i" + uuid.uuid4().hex[:19]


async def wait_for(fn, what, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(every)


# --- commands ---------------------------------------------------------------

async def test_run_basics(async_sandbox):
    s = async_sandbox
    r = await s.commands.run("echo hello")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "hello\n", "")
    r = await s.commands.run("echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    with pytest.raises(CommandExitException) as ei:
        await s.commands.run("echo out; echo err >&2; exit 3")
    assert (ei.value.exit_code, ei.value.stdout, ei.value.stderr) == (3, "out\n", "err\n")


async def test_run_cwd_envs_users(async_sandbox):
    s = async_sandbox
    assert (await s.commands.run("pwd", cwd="/tmp")).stdout == "/tmp\n"
    assert (await s.commands.run("pwd")).stdout == "/home/user\n"
    r = await s.commands.run('echo "$FOO|$DEN_CREATE_ENV|$DEN_OVERRIDE"', envs={"FOO": "bar", "DEN_OVERRIDE": "command"})
    assert r.stdout == "bar|from-create|command\n"
    assert (await s.commands.run("whoami", user="root")).stdout == "root\n"
    assert (await s.commands.run("whoami", user="user")).stdout == "user\n"
    assert (await s.commands.run("whoami")).stdout == "user\n"


async def test_run_timeout(async_sandbox):
    start = time.monotonic()
    with pytest.raises(TimeoutException):
        await async_sandbox.commands.run("sleep 30", timeout=1.5)
    assert time.monotonic() - start < 15


async def test_background_connect_stdin_list_kill(async_sandbox):
    s = async_sandbox
    first = []
    h = await s.commands.run("cat", background=True, stdin=True, on_stdout=first.append)
    assert h.pid > 0
    other = await AsyncSandbox.connect(s.sandbox_id)
    seen = []
    h2 = await other.commands.connect(h.pid, on_stdout=seen.append)
    await other.commands.send_stdin(h.pid, "ping\n")
    await wait_for(lambda: "ping\n" in "".join(seen), f"stdin echoed to the connected handle ({seen})")
    await wait_for(lambda: "ping\n" in "".join(first), f"stdin echoed to the original handle ({first})")
    procs = await s.commands.list()
    p = next((p for p in procs if p.pid == h.pid), None)
    assert p is not None and p.cmd == "/bin/bash" and list(p.args) == ["-l", "-c", "cat"], procs
    assert await other.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException):
        await h2.wait()

    async def gone():
        return all(p.pid != h.pid for p in await s.commands.list())

    await wait_for(gone, "killed pid to leave the list")
    assert await s.commands.kill(h.pid) is False


async def test_pty(async_sandbox):
    s = async_sandbox
    out = bytearray()
    pty = await s.pty.create(PtySize(rows=24, cols=80), on_data=out.extend, timeout=120)
    await s.pty.send_stdin(pty.pid, b"echo $((6*7))x\n")
    await wait_for(lambda: b"42x" in out, f"pty output ({bytes(out)!r})")
    await s.pty.resize(pty.pid, PtySize(rows=43, cols=132))
    await s.pty.send_stdin(pty.pid, b"stty size\n")
    await wait_for(lambda: b"43 132" in out, f"resized pty ({bytes(out)!r})")
    await s.pty.send_stdin(pty.pid, b"exit 0\n")
    assert (await pty.wait()).exit_code == 0


# --- files ------------------------------------------------------------------

async def test_files(async_sandbox):
    f = async_sandbox.files
    info = await f.write("/home/user/t/hello.txt", "hello, den\n")
    assert (info.path, info.name) == ("/home/user/t/hello.txt", "hello.txt")
    assert await f.read("/home/user/t/hello.txt") == "hello, den\n"
    data = bytes(range(256)) * 4
    await f.write("/tmp/bytes.bin", data)
    assert bytes(await f.read("/tmp/bytes.bin", format="bytes")) == data

    await f.make_dir("/tmp/tree/a/b")
    await f.write("/tmp/tree/a/b/deep.txt", "deep")
    await f.write("/tmp/tree/top.txt", "top")
    assert sorted(e.name for e in await f.list("/tmp/tree")) == ["a", "top.txt"]
    deep = await f.list("/tmp/tree", depth=3)
    assert sorted(e.path for e in deep) == ["/tmp/tree/a", "/tmp/tree/a/b", "/tmp/tree/a/b/deep.txt", "/tmp/tree/top.txt"]

    gi = await f.get_info("/tmp/tree/top.txt")
    assert (gi.type, gi.size, gi.owner) == (FileType.FILE, 3, "user")
    assert (await f.get_info("/tmp/tree/a")).type == FileType.DIR
    with pytest.raises(NotFoundException):
        await f.get_info("/tmp/no-such-file")
    assert await f.exists("/tmp/tree/top.txt") is True
    assert await f.exists("/tmp/nope") is False
    assert await f.make_dir("/tmp/mk/x") is True
    assert await f.make_dir("/tmp/mk/x") is False
    moved = await f.rename("/tmp/tree/top.txt", "/tmp/tree/moved.txt")
    assert moved.path == "/tmp/tree/moved.txt"
    assert await f.read("/tmp/tree/moved.txt") == "top"
    await f.remove("/tmp/tree")
    assert await f.exists("/tmp/tree") is False


async def test_100mb_round_trip(async_sandbox):
    size = 100 * 1024 * 1024
    data = os.urandom(size)
    want = hashlib.sha256(data).hexdigest()
    await async_sandbox.files.write("/tmp/big-async.bin", data, request_timeout=300)
    r = await async_sandbox.commands.run("sha256sum /tmp/big-async.bin", timeout=120)
    assert r.stdout.split()[0] == want
    back = await async_sandbox.files.read("/tmp/big-async.bin", format="bytes", request_timeout=300)
    assert hashlib.sha256(back).hexdigest() == want
    await async_sandbox.files.remove("/tmp/big-async.bin")


async def test_watch_dir(async_sandbox):
    f = async_sandbox.files
    await f.make_dir("/tmp/awatched")
    events = []
    handle = await f.watch_dir("/tmp/awatched", events.append, timeout=120)
    try:
        await asyncio.sleep(0.2)
        await f.write("/tmp/awatched/w.txt", "one")
        await async_sandbox.commands.run("echo more >> /tmp/awatched/w.txt")
        await f.remove("/tmp/awatched/w.txt")
        for typ in (FilesystemEventType.CREATE, FilesystemEventType.WRITE, FilesystemEventType.REMOVE):
            await wait_for(lambda: any(e.name == "w.txt" and e.type == typ for e in events), f"{typ} event ({events})")
    finally:
        await handle.stop()


# --- lifecycle and the control plane ------------------------------------------

async def test_get_info(async_sandbox):
    for info in (await async_sandbox.get_info(), await AsyncSandbox.get_info(async_sandbox.sandbox_id)):
        assert info.sandbox_id == async_sandbox.sandbox_id
        assert info.metadata == {"denTestRun": RUN_ID, "suite": "py-async"}
        assert str(getattr(info.state, "value", info.state)) == "running"
        assert info.cpu_count > 0 and info.memory_mb > 0
    assert await async_sandbox.is_running() is True


async def test_list_metadata_pagination():
    tag = str(uuid.uuid4())
    sbxs = await asyncio.gather(*(create_async(metadata={"listTag": tag, "idx": str(i)}) for i in range(3)))
    try:
        want = sorted(s.sandbox_id for s in sbxs)
        got = await AsyncSandbox.list(query=SandboxQuery(metadata={"listTag": tag})).next_items()
        assert sorted(s.sandbox_id for s in got) == want
        pager = AsyncSandbox.list(query=SandboxQuery(metadata={"listTag": tag}), limit=2)
        pages, seen = [], []
        while pager.has_next:
            items = await pager.next_items()
            pages.append(len(items))
            seen += [s.sandbox_id for s in items]
            assert len(pages) <= 3, pages
        assert pages == [2, 1]
        assert sorted(seen) == want
    finally:
        await asyncio.gather(*(s.kill() for s in sbxs), return_exceptions=True)


async def test_set_timeout_kills():
    sbx = await create_async(metadata={"suite": "py-async-timeout"}, timeout=600)
    try:
        await sbx.set_timeout(4)

        async def gone():
            try:
                await AsyncSandbox.connect(sbx.sandbox_id)
                return False
            except SandboxNotFoundException:
                return True

        await wait_for(gone, "connect to raise SandboxNotFoundException after the timeout", timeout=60, every=0.5)
        assert await sbx.is_running() is False
        assert await AsyncSandbox.kill(sbx.sandbox_id) is False
    finally:
        try:
            await sbx.kill()
        except Exception:  # noqa: BLE001
            pass


async def test_kill_and_errors(async_sandbox):
    sbx = await create_async(metadata={"suite": "py-async-kill"})
    assert await sbx.kill() is True
    assert await AsyncSandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.get_info(sbx.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.connect(UNKNOWN_ID)
    with pytest.raises(SandboxException):
        await AsyncSandbox.create("no-such-template-" + uuid.uuid4().hex[:8])
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.create(TEMPLATE, api_key=BAD_KEY)
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.list(api_key=BAD_KEY).next_items()
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.get_info(async_sandbox.sandbox_id, api_key=BAD_KEY)
