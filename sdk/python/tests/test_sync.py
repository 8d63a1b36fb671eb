"""The blocking face (den.Client, den.Sandbox) against a real den: every
method group, and the exact errors of bad requests."""

from __future__ import annotations

import base64
import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest

import den

from .conftest import IMAGE, Server, wait_for
from .fakes import Registry, serve


def ed25519_line(seed: int, comment: str) -> str:
    """An authorized_keys line of an ed25519 public key (any 32 bytes are one)."""

    def string(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    blob = string(b"ssh-ed25519") + string(bytes([seed]) * 32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


# ----- errors and the server -----------------------------------------------------


def test_errors_of_bad_requests_have_their_class_and_message(client: den.Client, server: Server) -> None:
    with pytest.raises(den.NotFoundError) as nf:
        client.sandboxes.get("nope")
    assert (str(nf.value), nf.value.code, nf.value.status) == ("sandbox nope not found", "not_found", 404)
    with pytest.raises(den.InvalidArgumentError) as bad:
        client.sandboxes.create(IMAGE, cpus=100)
    assert (str(bad.value), bad.value.code, bad.value.status) == ("cpus must be between 0.01 and 64, got 100", "invalid_argument", 400)
    with den.Client(server.url, "den_wrong") as wrong, pytest.raises(den.UnauthorizedError) as unauth:
        wrong.info()
    assert (unauth.value.code, unauth.value.status) == ("unauthenticated", 401)
    with pytest.raises(den.NotFoundError) as nf:
        client.images.get("no-such-image:v1")
    assert str(nf.value) == 'inspect image: image "no-such-image:v1" not found'


def test_info_nodes_cluster_and_join_tokens(client: den.Client) -> None:
    info = client.info()
    assert info.runtimes and info.runtimes[0] == "gvisor" and info.node == "local"
    nodes = client.nodes.list()
    assert [n.id for n in nodes] == ["local"]
    assert client.nodes.get("local").state == "ready"
    with pytest.raises(den.FailedPreconditionError) as e:
        client.nodes.drain("local")
    assert str(e.value) == "drain node local: draining is for the nodes of a cluster (den server); den up runs only its local node"
    with pytest.raises(den.FailedPreconditionError):
        client.nodes.undrain("local")
    members = client.cluster.members()
    assert (members.server, [m.role for m in members.members]) == ("local", ["leader"])
    with pytest.raises(den.FailedPreconditionError) as e:
        client.cluster.ca()
    assert str(e.value).startswith("read the cluster CA: this server has no node gateway")
    with pytest.raises(den.FailedPreconditionError) as e:
        client.cluster.rotate_ca()
    assert str(e.value).startswith("rotate the cluster CA: this server has no node gateway")
    with pytest.raises(den.FailedPreconditionError) as e:
        client.tokens.create(uses=2, ttl_sec=60)
    assert str(e.value).startswith("create join token: this server has no node gateway")
    assert client.tokens.list() == []
    with pytest.raises(den.NotFoundError) as nf:
        client.tokens.delete("nope")
    assert str(nf.value) == "join token nope not found"


# ----- sandboxes -------------------------------------------------------------------


def test_sandbox_lifecycle(client: den.Client) -> None:
    with den.Sandbox.create(IMAGE, client=client, name="py-life", env={"GREETING": "hi"}, metadata={"case": "life"}, timeout=120) as sb:
        assert (sb.state, sb.name, sb.info.metadata, sb.info.timeout) == ("running", "py-life", {"case": "life"}, 120)
        assert sb.commands.run("echo $GREETING").stdout == "hi\n"
        assert client.sandboxes.get("py-life").id == sb.id
        other = client.sandboxes.create(IMAGE, metadata={"case": "life"})
        try:
            listed = [s.id for s in client.sandboxes.list(metadata={"case": "life"}, limit=1)]
            assert sorted(listed) == sorted([sb.id, other.id])
            page = client.sandboxes.list_page(metadata={"case": "life"}, limit=1)
            assert len(page.sandboxes) == 1 and page.next_page_token
            assert [s.id for s in client.sandboxes.list(state="suspended", metadata={"case": "life"})] == []
        finally:
            client.sandboxes.delete(other.id)
        with pytest.raises(den.NotFoundError):
            client.sandboxes.delete(other.id)
        assert sb.set_timeout(600).timeout == 600
        assert client.sandboxes.set_timeout(sb.id, 0).info.expires_at is None
        sb.commands.run("echo kept > /tmp/state")
        assert sb.suspend().state == "suspended"
        with pytest.raises(den.FailedPreconditionError):
            client.sandboxes.suspend(sb.id)
        assert sb.resume().state == "running"
        assert sb.files.read_text("/tmp/state") == "kept\n"
        # Any command resumes a suspended sandbox by itself.
        client.sandboxes.suspend(sb.id)
        assert sb.commands.run("cat /tmp/state").stdout == "kept\n"
        client.sandboxes.suspend(sb.id)
        assert client.sandboxes.resume(sb.id).state == "running"
    with pytest.raises(den.NotFoundError):
        client.sandboxes.get("py-life")
    sb.kill()  # idempotent: already gone


def test_sandbox_create_without_a_client_reads_the_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEN_URL", server.url)
    monkeypatch.setenv("DEN_API_KEY", server.api_key)
    with den.Sandbox.create(IMAGE) as sb:
        assert sb._owns_client
        assert sb.commands.run("echo ok").stdout == "ok\n"
    assert sb.client._http.is_closed


# ----- commands --------------------------------------------------------------------


def test_commands_keep_their_connection(server: Server) -> None:
    # A command's stream is read to its end, a refused start's too (busybox
    # has no bash), so one connection carries them all: a stream closed
    # before its end takes its connection along.
    with den.Client(server.url, server.api_key) as c:
        s = den.Sandbox.create(IMAGE, client=c, timeout=120)
        try:
            for _ in range(4):
                assert s.commands.run("echo kept").stdout == "kept\n"
            conns = c._http._transport._pool.connections
            assert len(conns) == 1, conns
        finally:
            s.kill()


def test_run_returns_output_and_exit_code(sb: den.Sandbox) -> None:
    r = sb.commands.run("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code, r.status) == ("out\n", "err\n", 3, "exit status 3")
    r = sb.commands.run(["sh", "-c", 'echo "$0 $1"', "a", "b c"])
    assert r.stdout == "a b c\n"
    r = sb.commands.run("pwd; echo $X; whoami", cwd="/tmp", envs={"X": "42"}, user="user")
    assert r.stdout == "/tmp\n42\nuser\n"
    assert sb.commands.run("cat | wc -c", stdin=b"x" * 100_000).stdout.strip() == "100000"
    # A process that ends before reading its input still gives its result.
    assert [sb.commands.run("exit 4", stdin="unread").exit_code for _ in range(20)] == [4] * 20
    assert sb.commands.run("exec 0<&-; echo closed", stdin=b"y" * 300_000).stdout == "closed\n"
    lines: list[str] = []
    r = sb.commands.run("for i in 1 2 3; do echo line$i; done", on_stdout=lines.append)
    assert "".join(lines) == r.stdout == "line1\nline2\nline3\n"
    with pytest.raises(den.InvalidArgumentError) as e:
        sb.commands.run(["/no/such/program"])
    assert str(e.value) == 'executable "/no/such/program" not found'
    assert sb.commands.run("no-such-program").exit_code == 127


def test_run_timeout_kills_the_process(sb: den.Sandbox) -> None:
    with pytest.raises(den.TimeoutError) as e:
        sb.commands.run("sleep 30", timeout=1, tag="py-timeout")
    assert str(e.value) == "command timed out after 1s (killed)"
    wait_for(lambda: all(p.tag != "py-timeout" for p in sb.commands.list()), "the timed-out process to be gone")


def test_start_iterate_stdin_connect_signal(sb: den.Sandbox) -> None:
    with sb.commands.start("echo ready; while read l; do echo got:$l; done; echo bye", stdin=True, tag="py-echo") as h:
        it = iter(h)
        assert next(it).data == b"ready\n"
        assert [p.pid for p in sb.commands.list() if p.tag == "py-echo"] == [h.pid]
        h.send_stdin("one\n")
        assert next(it).text == "got:one\n"
        with sb.commands.connect("py-echo") as attached:
            sb.commands.send_stdin("py-echo", b"two\n")
            h.close_stdin()
            res = attached.wait()
        assert (res.stdout, res.exit_code) == ("got:two\nbye\n", 0)
        r = h.wait()
        assert r.stdout == "ready\ngot:one\ngot:two\nbye\n"
    h2 = sb.commands.start(["sleep", "60"], tag="py-sleep")
    assert sb.commands.kill("py-sleep") is True
    r = h2.wait()
    assert (r.exit_code, r.exited, r.status) == (-1, False, "signal: killed")
    assert sb.commands.kill(h2.pid) is False
    h3 = sb.commands.start("trap 'echo term; exit 7' TERM; echo up; while :; do sleep 0.05; done")
    assert next(iter(h3)).text == "up\n"
    sb.commands.signal(h3.pid, den.SIGTERM)
    assert (h3.wait().exit_code, h3.result.stdout) == (7, "up\nterm\n")  # type: ignore[union-attr]
    with pytest.raises(den.NotFoundError):
        sb.commands.connect(999999)


def test_pty_input_and_resize(sb: den.Sandbox) -> None:
    h = sb.commands.start(["sh"], pty=(80, 24))
    chunks = iter(h)

    def read_until(marker: bytes) -> None:
        out = b""
        while marker not in out:
            chunk = next(chunks)
            assert chunk.stream == "pty"
            out += chunk.data

    h.send_stdin("stty size\n")
    read_until(b"24 80")
    h.resize(100, 40)
    sb.commands.send_stdin(h.pid, "stty size\n", pty=True)
    read_until(b"40 100")
    sb.commands.resize_pty(h.pid, 120, 50)
    h.send_stdin("stty size; exit\n")
    read_until(b"50 120")
    assert h.wait().exit_code == 0


# ----- files -----------------------------------------------------------------------


def test_files(sb: den.Sandbox, tmp_path: Path) -> None:
    info = sb.files.write("/tmp/py-files/a/b.txt", "héllo")
    assert (info.path, info.name, info.type) == ("/tmp/py-files/a/b.txt", "b.txt", "file")
    assert sb.files.read("/tmp/py-files/a/b.txt") == "héllo".encode()
    assert sb.files.read_text("/tmp/py-files/a/b.txt") == "héllo"
    big = os.urandom(3 << 20)
    local = tmp_path / "big"
    local.write_bytes(big)
    with open(local, "rb") as f:
        sb.files.write("/tmp/py-files/big", f)  # streamed
    assert b"".join(sb.files.read_stream("/tmp/py-files/big")) == big
    sb.files.write("/tmp/py-files/gen", (bytes([i]) * 1000 for i in range(10)))
    assert sb.files.stat("/tmp/py-files/gen").size == 10_000
    st = sb.files.stat("/tmp/py-files/a")
    assert (st.type, st.name, st.path) == ("dir", "a", "/tmp/py-files/a")
    assert [(e.name, e.type) for e in sb.files.list("/tmp/py-files")] == [("a", "dir"), ("big", "file"), ("gen", "file")]
    assert [e.path for e in sb.files.list("/tmp/py-files", depth=2) if e.type == "file"] == [
        "/tmp/py-files/a/b.txt",
        "/tmp/py-files/big",
        "/tmp/py-files/gen",
    ]
    assert sb.files.exists("/tmp/py-files/a/b.txt") and not sb.files.exists("/tmp/py-files/nope")
    assert sb.files.mkdir("/tmp/py-files/d/e").type == "dir"  # type: ignore[union-attr]
    with pytest.raises(den.AlreadyExistsError):
        sb.files.mkdir("/tmp/py-files/d/e")
    assert sb.files.mkdir("/tmp/py-files/d/e", exist_ok=True) is None
    assert sb.files.move("/tmp/py-files/a/b.txt", "/tmp/py-files/d/c.txt").path == "/tmp/py-files/d/c.txt"
    sb.files.remove("/tmp/py-files/d")
    assert not sb.files.exists("/tmp/py-files/d")
    with pytest.raises(den.NotFoundError) as e:
        sb.files.read("/tmp/py-files/nope")
    assert e.value.code == "not_found"
    with pytest.raises(den.NotFoundError) as e:
        sb.files.stat("/nope")
    assert str(e.value) == "stat: lstat /nope: no such file or directory"
    # As another user: the file is theirs, relative paths are from their home.
    sb.files.write("mine.txt", "x", user="user")
    st = sb.files.stat("/home/user/mine.txt")
    assert (st.owner, sb.as_user("user").files.read_text("mine.txt")) == ("user", "x")
    sb.files.remove("/tmp/py-files")


def test_watch_reports_changes(sb: den.Sandbox) -> None:
    sb.files.mkdir("/tmp/py-watch", exist_ok=True)
    with sb.files.watch("/tmp/py-watch", recursive=True) as w:
        sb.commands.run("echo x > /tmp/py-watch/new.txt")
        events = iter(w)
        ev = next(events)
        while ev.name != "new.txt":
            ev = next(events)
        assert ev.op in ("create", "write")


def test_upload_and_download_dir_keep_modes_and_links(sb: den.Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o750)
    (src / "sub" / "deep" / "b.bin").write_bytes(os.urandom(70_000))
    (src / "link").symlink_to("a.txt")
    sb.files.upload_dir(src, "/tmp/py-up/dest")
    r = sb.commands.run("cd /tmp/py-up/dest && ./run.sh && stat -c '%a %n' run.sh a.txt && readlink link && ls /tmp/.den-sdk-* 2>&1")
    assert r.stdout.splitlines()[:4] == ["ran", "750 run.sh", "644 a.txt", "a.txt"]
    assert "No such file" in r.stdout  # the temporary tar is gone
    out = tmp_path / "out"
    sb.files.download_dir("/tmp/py-up/dest", out)
    assert (out / "sub" / "deep" / "b.bin").read_bytes() == (src / "sub" / "deep" / "b.bin").read_bytes()
    assert (out / "run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(out / "link") == "a.txt"
    with pytest.raises(den.NotFoundError):
        sb.files.download_dir("/tmp/py-up/none", out)
    with pytest.raises(NotADirectoryError):
        sb.files.download_dir("/tmp/py-up/dest/a.txt", out)
    # A sandbox cannot make download_dir write outside its destination.
    sb.commands.run("mkdir -p /tmp/py-evil && ln -sf /etc/passwd /tmp/py-evil/pw")
    with pytest.raises(den.UnsafeArchiveError):
        sb.files.download_dir("/tmp/py-evil", tmp_path / "evil")


# ----- images ----------------------------------------------------------------------


def write_context(d: Path, run: str = "echo built-$X > /built.txt") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "Dockerfile").write_text(f"FROM busybox\nARG X=1\nCOPY hello.txt /hello.txt\nRUN {run}\n")
    (d / "hello.txt").write_text("hello\n")
    (d / "secret.txt").write_text("not sent\n")
    (d / ".dockerignore").write_text("secret.txt\n")
    return d


def test_images_build_inspect_tag_export_import_remove(client: den.Client, tmp_path: Path) -> None:
    logs: list[str] = []
    res = client.images.build(write_context(tmp_path / "ctx"), tag="py-sync:v1", build_args={"X": "7"}, on_log=logs.append)
    assert (res.tags, res.steps, res.name) == (["py-sync:v1"], 3, "py-sync:v1")
    assert any("COPY hello.txt /hello.txt" in line for line in logs)
    img = client.images.get("py-sync:v1")
    assert (img.id, img.name, len(img.layers)) == (res.id, "py-sync:v1", 3)
    assert "py-sync:v1" in [i.name for i in client.images.list()]
    with den.Sandbox.create("py-sync:v1", client=client) as s:
        assert s.commands.run("cat /built.txt /hello.txt; test -e /secret.txt || echo no-secret").stdout == "built-7\nhello\nno-secret\n"
    assert client.images.tag("py-sync:v1", "py-sync:v2").name == "py-sync:v2"
    archive = tmp_path / "img.tar"
    n = client.images.export("py-sync:v2", archive)
    assert n == archive.stat().st_size and n > 0
    with tarfile.open(archive) as tf:
        assert "manifest.json" in tf.getnames()
    client.images.remove("py-sync:v2")
    with pytest.raises(den.NotFoundError):
        client.images.inspect("py-sync:v2")
    imported = client.images.import_archive(archive, name="py-sync:imported")
    assert (imported.name, imported.id) == ("py-sync:imported", res.id)
    assert client.images.prune().bytes >= 0
    with pytest.raises(den.BuildError) as be:
        client.images.build(write_context(tmp_path / "bad", run="echo failing-step && exit 9"), tag="py-sync:bad")
    # A failed RUN ends the stream with its error (docs/api.md's table says
    # failed_precondition; internal/build answers invalid_argument).
    assert (be.value.code, str(be.value)) == (
        "invalid_argument",
        'Dockerfile:4: RUN echo failing-step && exit 9: process "/bin/sh -c echo failing-step && exit 9" did not complete successfully: exit code 9',
    )
    assert any("failing-step" in line for line in be.value.log)


def test_images_push_and_pull_through_a_registry(client: den.Client) -> None:
    reg = Registry()
    with serve(reg.handler()) as addr:
        progress: list[den.ImageProgress] = []
        digest = client.images.push(IMAGE, f"{addr}/py/bb:v1", on_progress=progress.append)
        assert digest.startswith("sha256:") and ("py/bb", "v1") in reg.manifests
        assert {p.phase for p in progress} <= {"uploading", "exists"} and progress
        progress.clear()
        img = client.images.pull(f"{addr}/py/bb:v1", on_progress=progress.append)
        assert (img.name, img.digest) == (f"{addr}/py/bb:v1", digest)
        assert progress[0].phase == "resolving"
        with pytest.raises(den.NotFoundError):
            client.images.pull(f"{addr}/py/none:v1")
    client.images.remove(f"{addr}/py/bb:v1")


# ----- snapshots, fork, pools ---------------------------------------------------------


def test_snapshots_fork_and_start_from_a_snapshot(client: den.Client) -> None:
    with den.Sandbox.create(IMAGE, client=client) as src:
        src.commands.run("echo before > /tmp/mark")
        snap = src.snapshot(name="py-snap")
        assert (snap.name, snap.sandbox, snap.mode) == ("py-snap", src.id, "memory")
        assert client.snapshots.get("py-snap").id == snap.id
        assert snap.id in [s.id for s in client.snapshots.list()]
        assert snap.id in [o.id for o in client.snapshots.usage().objects]
        assert client.snapshots.prune(dry_run=True).dry_run is True
        forks = src.fork(2)
        try:
            assert len({f.id for f in forks} | {src.id}) == 3
            for i, f in enumerate(forks):
                f.commands.run(f"echo fork{i} >> /tmp/mark")
            assert [f.files.read_text("/tmp/mark") for f in forks] == ["before\nfork0\n", "before\nfork1\n"]
            assert src.files.read_text("/tmp/mark") == "before\n"
        finally:
            for f in forks:
                f.kill()
        with den.Sandbox.create(snapshot="py-snap", client=client) as restored:
            assert restored.info.from_snapshot == snap.id
            assert restored.files.read_text("/tmp/mark") == "before\n"
        with pytest.raises(den.AlreadyExistsError):
            client.snapshots.create(src.id, name="py-snap")
    client.snapshots.delete("py-snap")
    with pytest.raises(den.NotFoundError) as e:
        client.snapshots.get("py-snap")
    assert str(e.value) == "snapshot py-snap not found"


def test_pools(client: den.Client) -> None:
    pool = client.pools.create(size=1, image=IMAGE, name="py-pool", memory_mb=256)
    try:
        assert (pool.name, pool.size, pool.image) == ("py-pool", 1, IMAGE)
        wait_for(lambda: client.pools.get("py-pool").ready == 1, "the pool to fill")
        sb = client.sandboxes.create(pool="py-pool")
        try:
            assert sb.commands.run("echo claimed").stdout == "claimed\n"
        finally:
            sb.kill()
        assert client.pools.resize("py-pool", 0).size == 0
        assert "py-pool" in [p.name for p in client.pools.list()]
    finally:
        client.pools.delete("py-pool")
    with pytest.raises(den.NotFoundError):
        client.pools.get("py-pool")


# ----- network and ports ---------------------------------------------------------------


def test_network_policy_and_port_urls(client: den.Client) -> None:
    with den.Sandbox.create(IMAGE, client=client, network={"internet": False, "allow": ["example.com"]}) as s:
        assert s.get_network() == den.NetworkPolicy(internet=False, allow=["example.com"])
        # The server answers rules normalised: an address is a /32.
        assert s.set_network(den.NetworkPolicy(internet=True, deny=["1.2.3.4"])) == den.NetworkPolicy(internet=True, deny=["1.2.3.4/32"])
        assert client.sandboxes.get_network(s.id).deny == ["1.2.3.4/32"]
        with pytest.raises(den.InvalidArgumentError):
            client.sandboxes.set_network(s.id, {"allow": ["not a rule!"]})
        s.commands.run("mkdir -p /srv && echo page > /srv/index.html")
        s.commands.start(["httpd", "-f", "-p", "8080", "-h", "/srv"])
        u = s.port_url(8080)
        assert u.url.startswith(f"http://8080-{s.id}.localhost:") and list(u.headers) == ["X-Access-Token"]
        with httpx.Client() as http:
            ok = wait_for(lambda: (r := http.get(u.listener_url, headers=u.listener_headers)).status_code == 200 and r, "httpd to answer")
            assert ok.text == "page\n"

        def anonymous() -> int:  # a fresh request: no token, no cookie
            return httpx.get(u.listener_url, headers={"Host": u.listener_headers["Host"]}).status_code

        assert anonymous() == 401
        signed = s.port_url(8080, signed=60)
        assert signed.headers == {} and httpx.get(signed.listener_url, headers=signed.listener_headers).text == "page\n"
        assert anonymous() == 401
        assert s.set_port_public(8080).public_ports == [8080]
        assert anonymous() == 200
        assert client.sandboxes.set_port_public(s.id, 8080, False).info.public_ports == []
        assert anonymous() == 401


# ----- access: SSH keys, tenants, API keys ---------------------------------------------


def test_ssh_keys(client: den.Client) -> None:
    key = client.ssh_keys.add(ed25519_line(1, "py@test"), name="py-key")
    assert (key.name, key.fingerprint.startswith("SHA256:")) == ("py-key", True)
    assert [k.name for k in client.ssh_keys.list()] == ["py-key"]
    with pytest.raises(den.AlreadyExistsError):
        client.ssh_keys.add(ed25519_line(1, "again"))
    with pytest.raises(den.InvalidArgumentError):
        client.ssh_keys.add("not a key")
    client.ssh_keys.delete("py-key")
    assert client.ssh_keys.list() == []


def test_tenants_api_keys_and_rate_limit_retries(client: den.Client, server: Server) -> None:
    t = client.tenants.create("py-tenant", quota=den.Quota(sandboxes=1), rate_limit={"per_second": 1, "burst": 1})
    try:
        assert (t.name, t.quota.sandboxes, t.rate_limit.per_second) == ("py-tenant", 1, 1.0)
        assert client.tenants.get("py-tenant").usage.sandboxes == 0
        assert "py-tenant" in [x.name for x in client.tenants.list()]
        created = client.api_keys.create(tenant="py-tenant", name="ci")
        assert (created.key.tenant, created.key.admin, created.secret.startswith("den_")) == ("py-tenant", False, True)
        assert [k.name for k in client.api_keys.list(tenant="py-tenant")] == ["ci"]
        # The tenant's key: over its rate limit (1/s, burst 1) the server
        # answers 429 with Retry-After, which the client waits out.
        with den.Client(server.url, created.secret) as tc:
            for _ in range(3):
                assert [s.id for s in tc.sandboxes.list()] == []
            with den.Client(server.url, created.secret, max_retries=0) as no_retry:
                with pytest.raises(den.ResourceExhaustedError) as e:
                    for _ in range(3):
                        no_retry.info()
                assert e.value.retry_after is not None and e.value.retry_after >= 1
            with pytest.raises(den.PermissionDeniedError):
                tc.tenants.create("py-other")
        client.tenants.update("py-tenant", rate_limit=den.RateLimit())
        assert client.tenants.get("py-tenant").rate_limit.per_second == 0
        client.api_keys.revoke(created.key.id)
        with den.Client(server.url, created.secret) as revoked, pytest.raises(den.UnauthorizedError):
            revoked.info()
    finally:
        client.tenants.delete("py-tenant")
    with pytest.raises(den.NotFoundError):
        client.tenants.get("py-tenant")


def test_image_export_to_a_file_object(client: den.Client) -> None:
    buf = io.BytesIO()
    n = client.images.export(IMAGE, buf, format="oci")
    assert n == len(buf.getvalue())
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        assert "index.json" in tf.getnames()
