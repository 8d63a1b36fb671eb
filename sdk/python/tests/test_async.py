"""The asyncio face (den.AsyncClient, den.AsyncSandbox) against a real den:
every method group, errors, and concurrency from one event loop."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import httpx
import pytest

import den

from .conftest import IMAGE, Server, await_for
from .fakes import Registry, serve
from .test_sync import ed25519_line, write_context

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_errors_of_bad_requests_have_their_class_and_message(aclient: den.AsyncClient) -> None:
    with pytest.raises(den.NotFoundError) as nf:
        await aclient.sandboxes.get("nope")
    assert (str(nf.value), nf.value.status) == ("sandbox nope not found", 404)
    with pytest.raises(den.InvalidArgumentError) as bad:
        await aclient.sandboxes.create(IMAGE, memory_mb=1)
    assert str(bad.value) == "memory_mb must be between 32 and 262144, got 1"
    with pytest.raises(den.NotFoundError) as nf:
        await aclient.sandbox("nope").commands.run("true")
    assert str(nf.value) == "sandbox nope not found"


async def test_fifty_concurrent_execs_from_one_client_use_no_threads(aclient: den.AsyncClient, asb: den.AsyncSandbox) -> None:
    threads_before = set(threading.enumerate())
    seen_threads: set[threading.Thread] = set()

    async def one(i: int) -> den.CommandResult:
        r = await asb.commands.run(f"echo start-{i}; echo err-{i} >&2; exit {i % 7}")
        seen_threads.update(threading.enumerate())
        return r

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert [(r.stdout, r.stderr, r.exit_code) for r in results] == [(f"start-{i}\n", f"err-{i}\n", i % 7) for i in range(50)]
    # No thread appeared while the 50 ran (threads that ended are no concern).
    assert seen_threads <= threads_before and set(threading.enumerate()) <= threads_before


async def test_sandbox_lifecycle(aclient: den.AsyncClient) -> None:
    sb = await den.AsyncSandbox.create(IMAGE, client=aclient, name="py-alife", metadata={"case": "alife"}, timeout=120)
    async with sb:
        assert (sb.state, sb.info.timeout) == ("running", 120)
        assert (await aclient.sandboxes.get("py-alife")).id == sb.id
        assert [s.id async for s in aclient.sandboxes.list(metadata={"case": "alife"}, limit=1)] == [sb.id]
        page = await aclient.sandboxes.list_page(state=["running", "suspended"], metadata={"case": "alife"})
        assert [s.id for s in page.sandboxes] == [sb.id]
        assert (await sb.set_timeout(300)).timeout == 300
        assert (await aclient.sandboxes.set_timeout(sb.id, 600)).info.timeout == 600
        await sb.commands.run("echo kept > /tmp/state")
        assert (await aclient.sandboxes.suspend(sb.id)).state == "suspended"
        assert (await aclient.sandboxes.resume(sb.id)).state == "running"
        assert (await sb.suspend()).state == "suspended"
        assert (await sb.resume()).state == "running"
        assert await sb.files.read_text("/tmp/state") == "kept\n"
        assert (await sb.refresh()).state == "running"
        other = await aclient.sandboxes.create(IMAGE)
        await aclient.sandboxes.delete(other.id)
        await other.kill()  # idempotent
    with pytest.raises(den.NotFoundError):
        await aclient.sandboxes.get(sb.id)
    await sb.kill()  # idempotent


async def test_sandbox_connect_and_create_without_a_client(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEN_URL", server.url)
    monkeypatch.setenv("DEN_API_KEY", server.api_key)
    async with await den.AsyncSandbox.create(IMAGE) as sb:
        again = await den.AsyncSandbox.connect(sb.id)
        assert (again.id, again.state) == (sb.id, "running")
        await again.aclose()
        assert again.client._http.is_closed and not sb.client._http.is_closed
    assert sb.client._http.is_closed


async def test_commands_run_with_async_callbacks_stdin_and_timeout(asb: den.AsyncSandbox) -> None:
    got: list[str] = []

    async def collect(text: str) -> None:
        await asyncio.sleep(0)
        got.append(text)

    r = await asb.commands.run("echo a; echo b >&2; cat", on_stdout=collect, on_stderr=got.append, stdin="in\n", envs={"Z": "1"})
    assert (r.stdout, r.stderr) == ("a\nin\n", "b\n")
    assert sorted("".join(got).splitlines()) == ["a", "b", "in"]
    assert (await asb.commands.run(["id", "-u"], user="user")).stdout == "1000\n"
    with pytest.raises(den.TimeoutError) as e:
        await asb.commands.run("sleep 30", timeout=0.5)
    assert str(e.value) == "command timed out after 0.5s (killed)"


async def test_start_stream_connect_and_signals(asb: den.AsyncSandbox) -> None:
    h = await asb.commands.start("echo one; while read l; do echo two:$l; done", stdin=True, tag="py-astart")
    async with h:
        it = aiter(h)
        assert (await anext(it)).text == "one\n"
        assert [p.tag for p in await asb.commands.list() if p.pid == h.pid] == ["py-astart"]
        attached = await asb.commands.connect(h.pid)
        await asb.commands.send_stdin("py-astart", "x\n")
        await asb.commands.close_stdin(h.pid)
        assert (await attached.wait()).stdout == "two:x\n"
        r = await h.wait()
        assert (r.stdout, h.exit_code) == ("one\ntwo:x\n", 0)
    h2 = await asb.commands.start(["sleep", "60"])
    await asb.commands.signal(h2.pid, den.SIGKILL)
    assert (await h2.wait()).status == "signal: killed"
    h3 = await asb.commands.start(["sleep", "60"], tag="py-akill")
    assert await asb.commands.kill("py-akill") is True
    assert (await h3.wait()).exit_code == -1
    h4 = await asb.commands.start(["sleep", "60"])
    assert await h4.kill() is True
    assert (await h4.wait()).exited is False
    h5 = await asb.commands.start("trap 'exit 5' TERM; echo up; while :; do sleep 0.05; done")
    assert (await anext(aiter(h5))).text == "up\n"
    await h5.signal(den.SIGTERM)
    assert (await h5.wait()).exit_code == 5


async def test_pty(asb: den.AsyncSandbox) -> None:
    h = await asb.commands.start("sh", pty=den.PtySize(cols=90, rows=30))
    out = b""
    await h.send_stdin("stty size\n")
    async for chunk in h:
        out += chunk.data
        if b"30 90" in out:
            break
    await h.resize(132, 43)
    await asb.commands.resize_pty(h.pid, 133, 44)
    await h.send_stdin("stty size; exit\n")
    r = await h.wait()
    assert "44 133" in r.stdout and r.exit_code == 0


async def test_files(asb: den.AsyncSandbox, tmp_path: Path) -> None:
    assert (await asb.files.write("/tmp/py-afiles/x.txt", b"\x00\x01")).name == "x.txt"
    assert await asb.files.read("/tmp/py-afiles/x.txt") == b"\x00\x01"

    async def gen():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield bytes([65 + i]) * 10

    await asb.files.write("/tmp/py-afiles/gen.txt", gen())
    assert await asb.files.read_text("/tmp/py-afiles/gen.txt") == "A" * 10 + "B" * 10 + "C" * 10 + "D" * 10 + "E" * 10
    data = os.urandom(1 << 20)
    (tmp_path / "blob").write_bytes(data)
    await asb.files.write("/tmp/py-afiles/blob", tmp_path / "blob")
    assert b"".join([c async for c in asb.files.read_stream("/tmp/py-afiles/blob")]) == data
    assert [e.name for e in await asb.files.list("/tmp/py-afiles")] == ["blob", "gen.txt", "x.txt"]
    assert (await asb.files.stat("/tmp/py-afiles/blob")).size == 1 << 20
    assert await asb.files.exists("/tmp/py-afiles/x.txt")
    assert (await asb.files.mkdir("/tmp/py-afiles/d")).type == "dir"  # type: ignore[union-attr]
    assert await asb.files.mkdir("/tmp/py-afiles/d", exist_ok=True) is None
    assert (await asb.files.rename("/tmp/py-afiles/x.txt", "/tmp/py-afiles/d/y.txt")).name == "y.txt"
    await asb.files.remove("/tmp/py-afiles")
    assert not await asb.files.exists("/tmp/py-afiles")
    with pytest.raises(den.NotFoundError):
        await asb.files.read("/tmp/py-afiles/x.txt")


async def test_watch_is_an_async_iterator(asb: den.AsyncSandbox) -> None:
    await asb.files.mkdir("/tmp/py-awatch", exist_ok=True)
    async with await asb.files.watch("/tmp/py-awatch") as w:
        await asb.commands.run("mkdir /tmp/py-awatch/sub")
        async for ev in w:
            if ev.name == "sub":
                assert ev.op == "create" and ev.entry is not None and ev.entry.type == "dir"
                break


async def test_upload_and_download_dir(asb: den.AsyncSandbox, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f.txt").write_text("deep\n")
    (src / "x.sh").write_text("#!/bin/sh\n")
    (src / "x.sh").chmod(0o700)
    await asb.files.upload_dir(src, "py-aup", user="user")  # relative: the user's home
    r = await asb.commands.run("stat -c '%U %a' /home/user/py-aup/x.sh /home/user/py-aup/a/b/f.txt")
    assert r.stdout == "user 700\nuser 644\n"
    out = tmp_path / "out"
    await asb.files.download_dir("/home/user/py-aup", out, user="user")
    assert (out / "a" / "b" / "f.txt").read_text() == "deep\n"
    assert (out / "x.sh").stat().st_mode & 0o777 == 0o700


async def test_images(aclient: den.AsyncClient, tmp_path: Path) -> None:
    lines: list[str] = []

    async def on_log(line: str) -> None:
        lines.append(line)

    res = await aclient.images.build(write_context(tmp_path / "ctx"), tag=["py-async:v1", "py-async:v2"], on_log=on_log)
    assert res.tags == ["py-async:v1", "py-async:v2"] and lines
    assert (await aclient.images.get("py-async:v1")).id == res.image_id
    assert (await aclient.images.inspect("py-async:v2")).config.env
    assert "py-async:v2" in [i.name for i in await aclient.images.list()]
    assert (await aclient.images.tag("py-async:v1", "py-async:v3")).name == "py-async:v3"
    archive = tmp_path / "a.tar"
    assert await aclient.images.export("py-async:v3", archive) == archive.stat().st_size
    await aclient.images.remove("py-async:v3")
    assert (await aclient.images.import_archive(archive.read_bytes(), name="py-async:v4")).id == res.image_id
    assert (await aclient.images.prune()).bytes >= 0
    with pytest.raises(den.BuildError) as be:
        await aclient.images.build(tmp_path / "ctx", dockerfile="hello.txt", tag="py-async:bad")
    assert (be.value.code, str(be.value)) == ("invalid_argument", "hello.txt:1: hello: unknown instruction: hello")
    reg = Registry()
    with serve(reg.handler()) as addr:
        phases: list[str] = []
        digest = await aclient.images.push("py-async:v1", f"{addr}/py/a:v1", on_progress=lambda p: phases.append(p.phase))
        assert "uploading" in phases or "exists" in phases
        img = await aclient.images.pull(f"{addr}/py/a:v1")
        assert (img.digest, img.id) == (digest, res.image_id)
    await aclient.images.remove(f"{addr}/py/a:v1")


async def test_snapshots_fork_pools(aclient: den.AsyncClient) -> None:
    async with await den.AsyncSandbox.create(IMAGE, client=aclient) as src:
        await src.commands.run("echo mark > /tmp/m")
        snap = await aclient.snapshots.create(src.id, name="py-asnap")
        unnamed = await src.snapshot()
        assert unnamed.sandbox == src.id
        assert (await aclient.snapshots.get(snap.id)).name == "py-asnap"
        assert "py-asnap" in [s.name for s in await aclient.snapshots.list()]
        assert (await aclient.snapshots.usage()).tenant_bytes > 0
        # Objects older than 0 s: the unnamed one, not the named one. (An
        # admin's prune may also list what sandboxes deleted a moment ago
        # left behind, so only these two are asserted.)
        pruned = await aclient.snapshots.prune(objects=True, older_than_sec=0, dry_run=True)
        objects = {r.snapshot for r in pruned.removed if r.kind == "object"}
        assert pruned.dry_run and unnamed.id in objects and snap.id not in objects
        assert (await aclient.snapshots.get(unnamed.id)).id == unnamed.id  # a dry run removes nothing
        forks = await aclient.sandboxes.fork(src.id, 2)
        copies = await src.fork()
        try:
            assert [await f.files.read_text("/tmp/m") for f in forks + copies] == ["mark\n"] * 3
        finally:
            await asyncio.gather(*(f.kill() for f in forks + copies))
    await aclient.snapshots.delete("py-asnap")
    await aclient.snapshots.prune(objects=True, older_than_sec=0)
    assert await aclient.snapshots.list() == []
    pool = await aclient.pools.create(size=1, image=IMAGE, name="py-apool")
    try:
        await await_for(lambda: _ready(aclient), "the pool to fill")
        claimed = await aclient.sandboxes.create(pool="py-apool")
        assert (await claimed.commands.run("echo c")).stdout == "c\n"
        await claimed.kill()
        assert (await aclient.pools.resize(pool.id, 2)).size == 2
        assert [p.id for p in await aclient.pools.list()] == [pool.id]
    finally:
        await aclient.pools.delete(pool.id)


async def _ready(c: den.AsyncClient) -> bool:
    return (await c.pools.get("py-apool")).ready >= 1


async def test_network_and_ports(aclient: den.AsyncClient) -> None:
    async with await den.AsyncSandbox.create(IMAGE, client=aclient, network=den.NetworkPolicy(internet=False)) as sb:
        assert (await sb.get_network()).internet is False
        assert (await aclient.sandboxes.get_network(sb.id)).internet is False
        assert (await aclient.sandboxes.set_network(sb.id, {"internet": True})).internet is True
        assert (await sb.set_network({"allow": ["10.0.0.0/8"]})).allow == ["10.0.0.0/8"]
        await sb.commands.run("mkdir -p /srv && echo apage > /srv/index.html")
        await sb.commands.start(["httpd", "-f", "-p", "9090", "-h", "/srv"])
        u = await sb.port_url(9090)
        async with httpx.AsyncClient() as http:

            async def up() -> httpx.Response | None:
                r = await http.get(u.listener_url, headers=u.listener_headers)
                return r if r.status_code == 200 else None

            assert (await await_for(up, "httpd to answer")).text == "apage\n"
        assert (await sb.set_port_public(9090)).public_ports == [9090]
        assert (await aclient.sandboxes.set_port_public(sb.id, 0, True)).info.public_ports == [0, 9090]


async def test_access_groups(aclient: den.AsyncClient, server: Server) -> None:
    key = await aclient.ssh_keys.add(ed25519_line(2, "async@test"))
    assert key.name == "async@test"  # the key's comment
    assert [k.id for k in await aclient.ssh_keys.list()] == [key.id]
    await aclient.ssh_keys.delete(key.id)
    t = await aclient.tenants.create("py-atenant", quota={"sandboxes": 1})
    try:
        assert (await aclient.tenants.update(t.name, quota=den.Quota(sandboxes=2))).quota.sandboxes == 2
        assert (await aclient.tenants.get(t.name)).quota.sandboxes == 2
        assert t.name in [x.name for x in await aclient.tenants.list()]
        k = await aclient.api_keys.create(tenant=t.name, format="e2b")
        assert k.secret.startswith("e2b_")
        assert [x.id for x in await aclient.api_keys.list(tenant=t.name)] == [k.key.id]
        async with den.AsyncClient(server.url, k.secret) as tc:
            # The tenant sees none of the default tenant's sandboxes, and
            # its quota holds: the third sandbox is refused.
            assert [s async for s in tc.sandboxes.list()] == []
            a, b = await asyncio.gather(tc.sandboxes.create(IMAGE), tc.sandboxes.create(IMAGE))
            with pytest.raises(den.ResourceExhaustedError) as e:
                await tc.sandboxes.create(IMAGE)
            assert "quota" in str(e.value)
            await asyncio.gather(a.kill(), b.kill())
        await aclient.api_keys.revoke(k.key.id)
    finally:
        await aclient.tenants.delete("py-atenant")


async def test_server_groups(aclient: den.AsyncClient) -> None:
    assert (await aclient.info()).node == "local"
    assert [n.id for n in await aclient.nodes.list()] == ["local"]
    assert (await aclient.nodes.get("local")).runtimes
    with pytest.raises(den.FailedPreconditionError):
        await aclient.nodes.drain("local")
    with pytest.raises(den.FailedPreconditionError):
        await aclient.nodes.undrain("local")
    assert (await aclient.cluster.members()).server == "local"
    assert await aclient.tokens.list() == []
    with pytest.raises(den.FailedPreconditionError):
        await aclient.tokens.create(role="server")
    with pytest.raises(den.NotFoundError):
        await aclient.tokens.delete("nope")


async def test_http2_concurrent_execs_in_many_sandboxes(server: Server) -> None:
    # Over HTTP/2 a process can end, and den finish its answer, before
    # httpcore has sent the end of the request's stream (it sends the
    # request's message and its end in two writes, other tasks between).
    # den waits for that end instead of resetting the stream, which
    # httpcore would fail the call on (LocalProtocolError).
    async with den.AsyncClient(server.url, server.api_key, http2=True) as c:
        sbs = await asyncio.gather(*(den.AsyncSandbox.create(IMAGE, client=c, memory_mb=128) for _ in range(25)))
        try:
            for _ in range(4):
                results = await asyncio.gather(*(sb.commands.run(f"echo {i}") for i, sb in enumerate(sbs)))
                assert [r.stdout for r in results] == [f"{i}\n" for i in range(len(sbs))]
        finally:
            await asyncio.gather(*(sb.kill() for sb in sbs))


async def test_http2_prior_knowledge_works_sequentially(server: Server) -> None:
    # HTTP/2 is opt-in (see den._http.client_kwargs); used one call at a time
    # it carries every kind of call: unary, streamed answers, streamed bodies.
    async with den.AsyncClient(server.url, server.api_key, http2=True) as c:
        r = await c._http.get("/v1/info")
        assert r.http_version == "HTTP/2"
        async with await den.AsyncSandbox.create(IMAGE, client=c) as sb:
            assert (await sb.commands.run("echo h2")).stdout == "h2\n"
            data = os.urandom(300_000)
            await sb.files.write("/tmp/h2.bin", iter([data[:100_000], data[100_000:]]))
            assert await sb.files.read("/tmp/h2.bin") == data
