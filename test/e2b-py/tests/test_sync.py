"""The issue-3 scenario with the synchronous `e2b.Sandbox` client."""

import hashlib
import os
import time
import uuid

import pytest

from e2b import (
    AuthenticationException,
    CommandExitException,
    FileType,
    FilesystemEventType,
    NotFoundException,
    PtySize,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    TimeoutException,
)

from conftest import BAD_KEY, RUN_ID, TEMPLATE, create_sync, wait_for

UNKNOWN_ID = "i" + uuid.uuid4().hex[:19]


# --- commands ---------------------------------------------------------------

def test_run_stdout_exit_zero(sandbox):
    r = sandbox.commands.run("echo hello")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "hello\n", "")


def test_run_stderr(sandbox):
    r = sandbox.commands.run("echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_run_nonzero_raises(sandbox):
    with pytest.raises(CommandExitException) as ei:
        sandbox.commands.run("echo out; echo err >&2; exit 3")
    assert (ei.value.exit_code, ei.value.stdout, ei.value.stderr) == (3, "out\n", "err\n")


def test_run_callbacks(sandbox):
    out, err = [], []
    sandbox.commands.run("for i in 1 2 3; do echo o$i; echo e$i >&2; done", on_stdout=out.append, on_stderr=err.append)
    assert "".join(out) == "o1\no2\no3\n"
    assert "".join(err) == "e1\ne2\ne3\n"


def test_run_cwd(sandbox):
    assert sandbox.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sandbox.commands.run("pwd").stdout == "/home/user\n"


def test_run_envs(sandbox):
    r = sandbox.commands.run('echo "$FOO|$DEN_CREATE_ENV|$DEN_OVERRIDE"', envs={"FOO": "bar baz", "DEN_OVERRIDE": "command"})
    assert r.stdout == "bar baz|from-create|command\n"
    assert sandbox.commands.run('echo "$DEN_OVERRIDE"').stdout == "create\n"


def test_run_users(sandbox):
    assert sandbox.commands.run("whoami; echo $HOME", user="root").stdout == "root\n/root\n"
    assert sandbox.commands.run("whoami; echo $HOME", user="user").stdout == "user\n/home/user\n"
    assert sandbox.commands.run("whoami").stdout == "user\n"
    assert sandbox.commands.run("sudo -n whoami", user="user").stdout == "root\n"


def test_run_timeout(sandbox):
    start = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 30", timeout=1.5)
    assert time.monotonic() - start < 15


def test_background_connect_stdin_list_kill(sandbox):
    h = sandbox.commands.run("cat > /tmp/py-stdin.txt", background=True, stdin=True)
    assert h.pid > 0
    other = Sandbox.connect(sandbox.sandbox_id)
    h2 = other.commands.connect(h.pid)
    assert h2.pid == h.pid
    other.commands.send_stdin(h.pid, "ping\n")
    wait_for(lambda: sandbox.files.read("/tmp/py-stdin.txt") == "ping\n", "stdin to reach the process")
    h.send_stdin("pong\n")
    wait_for(lambda: sandbox.files.read("/tmp/py-stdin.txt") == "ping\npong\n", "second stdin write")

    procs = sandbox.commands.list()
    p = next((p for p in procs if p.pid == h.pid), None)
    assert p is not None, procs
    assert p.cmd == "/bin/bash"
    assert list(p.args) == ["-l", "-c", "cat > /tmp/py-stdin.txt"]

    assert other.commands.kill(h.pid) is True
    with pytest.raises(CommandExitException):
        h2.wait()
    wait_for(lambda: all(p.pid != h.pid for p in sandbox.commands.list()), "killed pid to leave the list")
    assert sandbox.commands.kill(h.pid) is False


def test_background_wait_and_close_stdin(sandbox):
    h = sandbox.commands.run("sleep 1; echo done", background=True)
    assert h.wait().stdout == "done\n"
    h = sandbox.commands.run("wc -c", background=True, stdin=True)
    h.send_stdin("12345")
    h.close_stdin()
    assert h.wait().stdout.strip() == "5"


def test_pty(sandbox):
    pty = sandbox.pty.create(PtySize(rows=24, cols=80), timeout=120)
    assert pty.pid > 0
    assert any(p.pid == pty.pid for p in sandbox.commands.list())
    sandbox.pty.send_stdin(pty.pid, b"echo $((6*7))x; stty size\n")
    time.sleep(0.5)
    sandbox.pty.resize(pty.pid, PtySize(rows=43, cols=132))
    sandbox.pty.send_stdin(pty.pid, b"stty size; exit 0\n")
    chunks = []
    r = pty.wait(on_pty=lambda d: chunks.append(bytes(d)))
    out = b"".join(chunks).decode(errors="replace")
    assert r.exit_code == 0
    assert "42x" in out, out
    assert "24 80" in out, out
    assert "43 132" in out, out


def test_pty_kill(sandbox):
    pty = sandbox.pty.create(PtySize(rows=24, cols=80))
    assert sandbox.pty.kill(pty.pid) is True
    with pytest.raises(CommandExitException):
        pty.wait()


# --- files ------------------------------------------------------------------

def test_write_read_text(sandbox):
    info = sandbox.files.write("/home/user/t/hello.txt", "hello, den\n")
    assert (info.path, info.name) == ("/home/user/t/hello.txt", "hello.txt")
    assert sandbox.files.read("/home/user/t/hello.txt") == "hello, den\n"
    assert sandbox.commands.run("cat /home/user/t/hello.txt").stdout == "hello, den\n"
    assert sandbox.files.write("rel.txt", "relative").path == "/home/user/rel.txt"


def test_write_read_bytes(sandbox):
    data = bytes(range(256)) * 4
    sandbox.files.write("/tmp/bytes.bin", data)
    assert bytes(sandbox.files.read("/tmp/bytes.bin", format="bytes")) == data
    infos = sandbox.files.write_files([{"path": "/tmp/multi/a.txt", "data": "A"}, {"path": "/tmp/multi/b.txt", "data": b"B"}])
    assert sorted(i.path for i in infos) == ["/tmp/multi/a.txt", "/tmp/multi/b.txt"]
    assert sandbox.files.read("/tmp/multi/b.txt") == "B"


def test_owner(sandbox):
    sandbox.files.write("/tmp/own-user.txt", "u")
    sandbox.files.write("/tmp/own-root.txt", "r", user="root")
    assert sandbox.files.get_info("/tmp/own-user.txt").owner == "user"
    assert sandbox.files.get_info("/tmp/own-root.txt").owner == "root"


def test_100mb_round_trip(sandbox):
    size = 100 * 1024 * 1024
    data = os.urandom(size)
    want = hashlib.sha256(data).hexdigest()
    sandbox.files.write("/tmp/big.bin", data, request_timeout=300)
    assert sandbox.files.get_info("/tmp/big.bin").size == size
    assert sandbox.commands.run("sha256sum /tmp/big.bin", timeout=120).stdout.split()[0] == want
    back = sandbox.files.read("/tmp/big.bin", format="bytes", request_timeout=300)
    assert len(back) == size
    assert hashlib.sha256(back).hexdigest() == want
    sandbox.files.remove("/tmp/big.bin")


def test_list_depth(sandbox):
    sandbox.files.make_dir("/tmp/tree/a/b")
    sandbox.files.write("/tmp/tree/a/b/deep.txt", "deep")
    sandbox.files.write("/tmp/tree/top.txt", "top")
    one = sandbox.files.list("/tmp/tree")
    assert sorted(e.name for e in one) == ["a", "top.txt"]
    by = {e.name: e for e in one}
    assert by["a"].type == FileType.DIR and by["a"].path == "/tmp/tree/a"
    assert by["top.txt"].type == FileType.FILE and by["top.txt"].size == 3
    deep = sandbox.files.list("/tmp/tree", depth=3)
    assert sorted(e.path for e in deep) == ["/tmp/tree/a", "/tmp/tree/a/b", "/tmp/tree/a/b/deep.txt", "/tmp/tree/top.txt"]
    two = sandbox.files.list("/tmp/tree", depth=2)
    assert sorted(e.path for e in two) == ["/tmp/tree/a", "/tmp/tree/a/b", "/tmp/tree/top.txt"]


def test_get_info_exists(sandbox):
    sandbox.files.write("/tmp/info.txt", "12345")
    sandbox.commands.run("chmod 640 /tmp/info.txt")
    f = sandbox.files.get_info("/tmp/info.txt")
    assert (f.name, f.path, f.type, f.size) == ("info.txt", "/tmp/info.txt", FileType.FILE, 5)
    assert f.permissions == "-rw-r-----"
    assert f.mode & 0o777 == 0o640
    assert f.owner == "user"
    assert sandbox.files.get_info("/tmp").type == FileType.DIR
    with pytest.raises(NotFoundException):
        sandbox.files.get_info("/tmp/no-such-file")
    with pytest.raises(NotFoundException):
        sandbox.files.read("/tmp/no-such-file")
    assert sandbox.files.exists("/tmp/info.txt") is True
    assert sandbox.files.exists("/tmp/not-there") is False


def test_make_dir_rename_remove(sandbox):
    assert sandbox.files.make_dir("/tmp/mk/x/y") is True
    assert sandbox.files.make_dir("/tmp/mk/x/y") is False
    sandbox.files.write("/tmp/mv/old.txt", "moved")
    info = sandbox.files.rename("/tmp/mv/old.txt", "/tmp/mv/new.txt")
    assert (info.path, info.name) == ("/tmp/mv/new.txt", "new.txt")
    assert sandbox.files.exists("/tmp/mv/old.txt") is False
    assert sandbox.files.read("/tmp/mv/new.txt") == "moved"
    sandbox.files.write("/tmp/rm/sub/f.txt", "x")
    sandbox.files.remove("/tmp/rm/sub/f.txt")
    assert sandbox.files.exists("/tmp/rm/sub/f.txt") is False
    sandbox.files.remove("/tmp/rm")
    assert sandbox.files.exists("/tmp/rm") is False


def test_watch_dir(sandbox):
    sandbox.files.make_dir("/tmp/watched")
    handle = sandbox.files.watch_dir("/tmp/watched")
    events = []
    try:
        sandbox.files.write("/tmp/watched/w.txt", "one")
        sandbox.commands.run("echo more >> /tmp/watched/w.txt")
        sandbox.files.rename("/tmp/watched/w.txt", "/tmp/watched/w2.txt")
        sandbox.files.remove("/tmp/watched/w2.txt")

        def seen(name, typ):
            events.extend(handle.get_new_events())
            return any(e.name == name and e.type == typ for e in events)

        wait_for(lambda: seen("w.txt", FilesystemEventType.CREATE), f"create event ({events})")
        wait_for(lambda: seen("w.txt", FilesystemEventType.WRITE), f"write event ({events})")
        wait_for(lambda: seen("w.txt", FilesystemEventType.RENAME), f"rename event ({events})")
        wait_for(lambda: seen("w2.txt", FilesystemEventType.REMOVE), f"remove event ({events})")
    finally:
        handle.stop()


# --- lifecycle and the control plane ------------------------------------------

def test_get_info(sandbox):
    for info in (sandbox.get_info(), Sandbox.get_info(sandbox.sandbox_id)):
        assert info.sandbox_id == sandbox.sandbox_id
        assert info.metadata == {"denTestRun": RUN_ID, "suite": "py-sync"}
        assert str(getattr(info.state, "value", info.state)) == "running"
        assert info.template_id
        assert info.cpu_count > 0 and info.memory_mb > 0
        assert info.envd_version
        left = info.end_at.timestamp() - time.time()
        assert 0 < left <= 960, info.end_at
    assert sandbox.is_running() is True


def test_list_metadata_pagination():
    tag = str(uuid.uuid4())
    sbxs = [create_sync(metadata={"listTag": tag, "idx": str(i)}) for i in range(3)]
    try:
        want = sorted(s.sandbox_id for s in sbxs)
        got = Sandbox.list(query=SandboxQuery(metadata={"listTag": tag})).next_items()
        assert sorted(s.sandbox_id for s in got) == want
        assert all(s.metadata["listTag"] == tag for s in got)
        one = Sandbox.list(query=SandboxQuery(metadata={"listTag": tag, "idx": "1"})).next_items()
        assert [s.sandbox_id for s in one] == [sbxs[1].sandbox_id]
        pager = Sandbox.list(query=SandboxQuery(metadata={"listTag": tag}), limit=2)
        pages, seen = [], []
        while pager.has_next:
            items = pager.next_items()
            pages.append(len(items))
            seen += [s.sandbox_id for s in items]
            assert len(pages) <= 3, pages
        assert pages == [2, 1]
        assert sorted(seen) == want
        assert Sandbox.list(query=SandboxQuery(metadata={"listTag": str(uuid.uuid4())})).next_items() == []
    finally:
        for s in sbxs:
            s.kill()


def test_set_timeout_kills():
    sbx = create_sync(metadata={"suite": "py-timeout"}, timeout=600)
    try:
        sbx.set_timeout(4)
        left = sbx.get_info().end_at.timestamp() - time.time()
        assert left <= 6, left

        def gone():
            try:
                Sandbox.connect(sbx.sandbox_id)
                return False
            except SandboxNotFoundException:
                return True

        wait_for(gone, "Sandbox.connect to raise SandboxNotFoundException after the timeout", timeout=60, every=0.5)
        with pytest.raises(SandboxNotFoundException):
            Sandbox.get_info(sbx.sandbox_id)
        assert sbx.is_running() is False
        with pytest.raises(Exception):
            sbx.commands.run("true", request_timeout=10)
        assert Sandbox.kill(sbx.sandbox_id) is False
    finally:
        try:
            sbx.kill()
        except Exception:  # noqa: BLE001
            pass


def test_kill():
    sbx = create_sync(metadata={"suite": "py-kill"})
    assert sbx.kill() is True
    assert Sandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sbx.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(sbx.sandbox_id)
    assert sbx.is_running() is False


def test_unknown_sandbox():
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(UNKNOWN_ID)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(UNKNOWN_ID)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.set_timeout(UNKNOWN_ID, 60)
    assert Sandbox.kill(UNKNOWN_ID) is False


def test_unknown_template():
    with pytest.raises(SandboxException) as ei:
        Sandbox.create("no-such-template-" + uuid.uuid4().hex[:8])
    assert "404" in str(ei.value) or getattr(ei.value, "status_code", None) == 404, repr(ei.value)


def test_bad_key(sandbox):
    with pytest.raises(AuthenticationException):
        Sandbox.create(TEMPLATE, api_key=BAD_KEY)
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key=BAD_KEY).next_items()
    with pytest.raises(AuthenticationException):
        Sandbox.get_info(sandbox.sandbox_id, api_key=BAD_KEY)
    with pytest.raises(AuthenticationException):
        Sandbox.connect(sandbox.sandbox_id, api_key=BAD_KEY)
    with pytest.raises(AuthenticationException):
        Sandbox.kill(sandbox.sandbox_id, api_key=BAD_KEY)
    assert sandbox.is_running() is True
