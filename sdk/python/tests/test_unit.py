"""The SDK's I/O-free parts, without a server: configuration, error mapping,
the Connect envelope codec, .dockerignore matching, tar streams and safe
extraction, retries (against a scripted server on loopback)."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import tarfile
from pathlib import Path

import pytest

import den
from den import _config, _envd, _ops, _tar
from den._core import RetryPolicy
from den._dockerignore import Ignore, PatternMatcher, read_patterns
from den.errors import error_from_body
from den.models import SandboxInfo, from_json

from .fakes import Scripted, serve

# ----- configuration ----------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for k in ("DEN_URL", "DEN_API_KEY", "DEN_DATA_DIR", "E2B_SANDBOX_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DEN_DATA_DIR", str(tmp_path))
    return tmp_path


def test_config_reads_the_env_file_of_the_data_dir(clean_env: Path) -> None:
    (clean_env / "env").write_text(
        "# written by den up\nexport DEN_URL='http://127.0.0.1:7070/'\nDEN_API_KEY=\"den_\\x41b\"\n\nE2B_SANDBOX_URL=http://127.0.0.1:7071\n"
    )
    c = den.Client()
    assert (c.url, c._cfg.api_key, c._sandbox_traffic_url()) == ("http://127.0.0.1:7070", "den_Ab", "http://127.0.0.1:7071")
    c.close()


def test_config_environment_wins_over_the_file_and_arguments_over_both(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "env").write_text("DEN_URL=http://file:1\nDEN_API_KEY=file-key\n")
    monkeypatch.setenv("DEN_URL", "http://env:2")
    cfg = _config.resolve(None, None)
    assert (cfg.url, cfg.api_key) == ("http://env:2", "file-key")
    cfg = _config.resolve("http://arg:3", "arg-key")
    assert (cfg.url, cfg.api_key) == ("http://arg:3", "arg-key")


def test_config_without_a_url_is_a_config_error(clean_env: Path) -> None:
    with pytest.raises(den.ConfigError) as e:
        den.Client()
    assert str(e.value) == "den: no server URL: set DEN_URL and DEN_API_KEY, or start den with `den up`"


def test_config_refuses_a_bad_url_and_a_bad_env_line(clean_env: Path) -> None:
    with pytest.raises(den.ConfigError) as e:
        den.Client("127.0.0.1:7070")
    assert str(e.value) == "den: invalid server URL '127.0.0.1:7070': want http(s)://host[:port]"
    (clean_env / "env").write_text("DEN_URL=http://x:1\nnot a pair\n")
    with pytest.raises(den.ConfigError) as e:
        _config.resolve(None, None)
    assert str(e.value) == f"read env file {clean_env / 'env'} line 2: want KEY=VALUE, got 'not a pair'"


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEN_DATA_DIR", "/x/y")
    assert den.default_data_dir() == Path("/x/y")
    monkeypatch.delenv("DEN_DATA_DIR")
    want = Path("/var/lib/den") if os.geteuid() == 0 else Path.home() / ".local/share/den"
    assert den.default_data_dir() == want


# ----- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (404, b'{"code":"not_found","message":"sandbox x not found"}', den.NotFoundError, "not_found"),
        (409, b'{"code":"already_exists","message":"m"}', den.AlreadyExistsError, "already_exists"),
        (409, b'{"code":"failed_precondition","message":"m"}', den.FailedPreconditionError, "failed_precondition"),
        (409, b'{"code":"conflict","message":"m"}', den.ConflictError, "conflict"),
        (400, b'{"code":"invalid_argument","message":"m"}', den.InvalidArgumentError, "invalid_argument"),
        (401, b'{"code":"unauthenticated","message":"m"}', den.UnauthorizedError, "unauthenticated"),
        (403, b'{"code":"permission_denied","message":"m"}', den.PermissionDeniedError, "permission_denied"),
        (429, b'{"code":"resource_exhausted","message":"m"}', den.ResourceExhaustedError, "resource_exhausted"),
        (507, b'{"code":"insufficient_storage","message":"m"}', den.InsufficientStorageError, "insufficient_storage"),
        (503, b'{"code":"unavailable","message":"m"}', den.UnavailableError, "unavailable"),
        (501, b'{"code":"unsupported","message":"m"}', den.UnsupportedError, "unsupported"),
        (501, b'{"code":"unimplemented","message":"m"}', den.UnsupportedError, "unsupported"),
        (409, b'{"code":"aborted","message":"m"}', den.ConflictError, "aborted"),
        (413, b'{"code":"too_large","message":"m"}', den.TooLargeError, "too_large"),
        (500, b'{"code":"internal","message":"m"}', den.InternalError, "internal"),
        (502, b'{"code":502,"message":"m"}', den.APIError, ""),  # the E2B facade's numeric codes
        (404, b"404 page not found", den.NotFoundError, ""),
    ],
)
def test_error_classes_follow_codes_then_statuses(status: int, body: bytes, cls: type, code: str) -> None:
    e = error_from_body(status, body)
    assert type(e) is cls
    assert (e.code, e.status) == (code, status)


def test_error_message_and_retry_after() -> None:
    e = error_from_body(429, b'{"code":"resource_exhausted","message":"tenant t is over its rate limit"}', {"retry-after": "2"})
    assert str(e) == "tenant t is over its rate limit"
    assert e.retry_after == 2.0
    assert isinstance(e, den.DenError)
    assert isinstance(den.DeadlineExceededError("x"), TimeoutError)


# ----- the Connect envelope codec ----------------------------------------------------


def test_envelopes_split_anywhere_decode_in_order() -> None:
    stream = (
        _envd.envelope({"event": {"start": {"pid": 7}}})
        + _envd.envelope({"event": {"data": {"stdout": "aGk="}}})
        + _envd.envelope({"event": {"end": {"exitCode": 3, "exited": True, "status": "exit status 3"}}})
        + _envd.envelope({}, flags=_envd.FLAG_END_STREAM)
    )
    for cut in range(1, len(stream)):
        dec = _envd.EnvelopeDecoder()
        msgs = list(dec.feed(stream[:cut])) + list(dec.feed(stream[cut:]))
        events = [_envd.process_event(m) for m in msgs]
        assert events == [_envd.Started(7), den.OutputChunk("stdout", b"hi"), _envd.Ended(3, True, "exit status 3", "")]
        assert dec.ended


def test_envelope_end_error_is_raised_with_its_class() -> None:
    dec = _envd.EnvelopeDecoder()
    data = _envd.envelope({"error": {"code": "deadline_exceeded", "message": "context deadline exceeded"}}, flags=_envd.FLAG_END_STREAM)
    with pytest.raises(den.DeadlineExceededError) as e:
        list(dec.feed(data))
    assert (str(e.value), e.value.status) == ("context deadline exceeded", 504)


def test_envelope_over_the_limit_and_a_cut_stream_are_protocol_errors() -> None:
    dec = _envd.EnvelopeDecoder(max_message=10)
    with pytest.raises(den.ProtocolError) as e:
        list(dec.feed(struct.pack(">BI", 0, 11)))
    assert str(e.value) == "the sandbox sent a message of 11 bytes, over the 10-byte limit"
    dec = _envd.EnvelopeDecoder()
    list(dec.feed(_envd.envelope({"event": {}})))
    with pytest.raises(den.ProtocolError) as e:
        dec.finish("start process")
    assert str(e.value) == "start process: the stream ended without its end message"


def test_start_request_runs_strings_in_a_shell_and_lists_as_argv() -> None:
    req = _envd.start_request("echo $HOME", envs={"A": "1"}, cwd="/tmp", tag="t", stdin=True, pty=den.PtySize(100, 40))
    assert req == {
        "process": {"cmd": "bash", "args": ["-c", "echo $HOME"], "envs": {"A": "1"}, "cwd": "/tmp"},
        "tag": "t",
        "stdin": True,
        "pty": {"size": {"cols": 100, "rows": 40}},
    }
    assert _envd.start_request(["ls", "-l"]) == {"process": {"cmd": "ls", "args": ["-l"]}}
    with pytest.raises(ValueError):
        _envd.start_request([])
    assert _envd.selector(12) == {"pid": 12} and _envd.selector("web") == {"tag": "web"}


def _started_cmd(call: object) -> str:
    """The program of a Process/Start call's request."""
    import json

    content = call.content  # type: ignore[attr-defined]
    return json.loads(content[5:])["process"]["cmd"]


def test_command_line_without_bash_runs_with_sh() -> None:
    # A command line starts bash; the guest's answer that the image has none
    # starts it again with /bin/sh, and the sandbox's later command lines
    # start with /bin/sh at once. An argv naming bash gets the error.
    req = _envd.start_request("echo $0")
    missing = den.InvalidArgumentError('executable "bash" not found in PATH', code="invalid_argument", status=400)
    op = _ops.start_process("sb1", req, None, None, shell=True)
    assert _started_cmd(next(op)) == "bash"
    assert _started_cmd(op.throw(missing)) == "/bin/sh"
    assert _started_cmd(next(_ops.start_process("sb1", req, None, None, shell=True))) == "/bin/sh"
    assert _started_cmd(next(_ops.start_process("sb1", _envd.start_request(["bash", "-c", "true"]), None, None, shell=False))) == "bash"
    # As the guest answers: the stream opens and ends with the error; it is
    # read to its end (its connection is kept) and closed before the
    # second start.
    op = _ops.start_process("sb2", req, None, None, shell=True)
    next(op)
    handle = object()
    assert op.send(handle).kind == "read"
    draining = op.throw(missing)
    assert (draining.kind, draining.handle) == ("read", handle)
    closing = op.send(b"")
    assert (closing.kind, closing.handle) == ("close", handle)
    assert _started_cmd(op.send(None)) == "/bin/sh"
    op = _ops.start_process("sb3", req, None, None, shell=True)
    next(op)
    other = den.InvalidArgumentError('cwd "/nope" is not a directory', code="invalid_argument", status=400)
    with pytest.raises(den.InvalidArgumentError, match="cwd"):
        op.throw(other)
    assert _started_cmd(next(_ops.start_process("sb3", req, None, None, shell=True))) == "bash"
    op = _ops.start_process("sb4", _envd.start_request(["bash", "-c", "true"]), None, None, shell=False)
    next(op)
    with pytest.raises(den.InvalidArgumentError, match="bash"):
        op.throw(missing)


def test_output_collector_decodes_characters_split_across_chunks() -> None:
    got: list[str] = []
    col = _envd.OutputCollector(on_stdout=got.append)
    data = "héllo ✓".encode()
    for i in range(len(data)):
        for cb, text in col.add(den.OutputChunk("stdout", data[i : i + 1])):
            cb(text)
    assert "".join(got) == "héllo ✓"
    assert col.result(_envd.Ended(0, True, "exit status 0", ""), 1).stdout == "héllo ✓"


def test_entries_decode_protobuf_json() -> None:
    e = _envd.entry({"name": "tmp", "type": "FILE_TYPE_DIRECTORY", "path": "/tmp", "size": "4096", "mode": 511, "modifiedTime": "2026-12-03T21:15:05.701894254Z"})
    assert (e.type, e.size, e.mode, e.modified_time.microsecond) == ("dir", 4096, 0o777, 701894)  # type: ignore[union-attr]
    assert _envd.entry({"type": 3, "symlinkTarget": "/x"}).symlink_target == "/x"


def test_models_ignore_unknown_fields_and_parse_times() -> None:
    s = from_json(SandboxInfo, {"id": "a", "cpus": 1, "new_field": 1, "network": {"internet": False}, "created_at": "2030-01-02T03:04:05Z"})
    assert (s.id, s.cpus, s.network, s.created_at.year) == ("a", 1.0, den.NetworkPolicy(internet=False), 2030)  # type: ignore[union-attr]


def test_port_signature_matches_the_go_servers() -> None:
    # rest.PortSignature("tok-123", "sb-abc", 8080, 1900000000), computed by Go.
    assert _ops.port_signature("tok-123", "sb-abc", 8080, 1900000000) == "v1_oTCL3CDqpYFioVNqIQWN7EjaP2acOaseQ_Dvgg8oU28"


# ----- .dockerignore ------------------------------------------------------------------

# From github.com/moby/patternmatcher's TestMatches.
MATCHES = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True), ("**", "/", True),
    ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True), ("**", "dir/file/", True),
    ("**/", "dir/file/", True), ("**/**", "dir/file", True), ("**/**", "dir/file/", True), ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True), ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True), ("**file", "file", True), ("**file", "dir/file", True),
    ("**/file", "dir/file", True), ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True), ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False), ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True), ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False), ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True), ("a\\*b", "a*b", True),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "path", "want"), MATCHES)
def test_dockerignore_matches_as_moby_does(pattern: str, path: str, want: bool) -> None:
    got, _ = PatternMatcher([pattern]).matches_using_parent_results(path, None)
    assert got is want


def test_dockerignore_exclusions_and_file_parsing() -> None:
    assert PatternMatcher(["**", "!util/docker/web"]).matches_using_parent_results("util/docker/web/foo", None)[0] is False
    assert PatternMatcher(["**", "!util/docker/web", "util/docker/web/foo"]).matches_using_parent_results("util/docker/web/foo", None)[0] is True
    assert read_patterns("\ufeff# c\n /abs/x \n!  keep/../keep2\n\n*.log\n") == ["abs/x", "!keep2", "*.log"]
    with pytest.raises(ValueError):
        PatternMatcher(["!"])


def test_build_context_leaves_out_what_dockerignore_names(tmp_path: Path) -> None:
    files = {
        "Dockerfile": "FROM busybox\n",
        ".dockerignore": "ignored\n*.log\n!keep.log\nsub/deep\n",
        "a.txt": "a",
        "ignored/secret": "s",
        "x.log": "x",
        "keep.log": "k",
        "sub/deep/y": "y",
        "sub/z": "z",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    outside = tmp_path.parent / f"{tmp_path.name}.Dockerfile"
    outside.write_text("FROM busybox\n")
    bc = _tar.BuildContext(tmp_path, outside)
    with tarfile.open(fileobj=io.BytesIO(b"".join(bc.stream()))) as tf:
        names = sorted(tf.getnames())
    assert names == sorted([".dockerignore", "Dockerfile", "a.txt", "keep.log", "sub", "sub/z", bc.dockerfile])
    assert bc.dockerfile.startswith(".den-dockerfile-")
    assert Ignore(None, "Dockerfile").check("anything", False) == (False, False)


# ----- tar streams ----------------------------------------------------------------------


def test_tar_stream_round_trips_modes_links_and_big_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    big = os.urandom(3 * _tar.CHUNK + 17)
    (src / "d" / "big.bin").write_bytes(big)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    (src / "link").symlink_to("run.sh")
    chunks = list(_tar.stream(_tar.walk(src)))
    assert max(len(c) for c in chunks) <= 2 * _tar.CHUNK
    out = tmp_path / "out"
    _tar.extract(io.BytesIO(b"".join(chunks)), out)
    assert (out / "d" / "big.bin").read_bytes() == big
    assert (out / "run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(out / "link") == "run.sh"


def _tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in members:
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti, b""


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(tarfile.TarInfo("../evil"), b"x")], "archive entry '../evil' would be written outside the destination"),
        ([(tarfile.TarInfo("/etc/evil"), b"x")], "archive entry '/etc/evil' would be written outside the destination"),
        ([_link("l", "/etc/passwd")], "archive entry 'l' links outside the destination (to '/etc/passwd')"),
        ([_link("d/l", "../../x")], "archive entry 'd/l' links outside the destination (to '../../x')"),
    ],
)
def test_extract_refuses_entries_that_leave_the_destination(tmp_path: Path, members: list, message: str) -> None:
    with pytest.raises(den.UnsafeArchiveError) as e:
        _tar.extract(_tar_of(*members), tmp_path / "out")
    assert str(e.value) == message
    assert not (tmp_path / "evil").exists()


def test_extract_refuses_writing_through_a_link_it_unpacked(tmp_path: Path) -> None:
    # d/up -> .. stays inside lexically, but d/up/up2 -> .. then points out.
    archive = _tar_of(_link("d/up", ".."), _link("d/up/up2", ".."), (tarfile.TarInfo("d/up/up2/evil"), b"x"))
    with pytest.raises(den.UnsafeArchiveError):
        _tar.extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


# ----- retries ------------------------------------------------------------------------


def test_retry_policy_backs_off_on_429_and_503_only() -> None:
    p = RetryPolicy(max_retries=3, base=0.25, rand=lambda: 1.0)
    assert [p.delay(i, 503, None) for i in range(4)] == [0.25, 0.5, 1.0, None]
    assert p.delay(0, 429, 2.0) == 2.0
    assert p.delay(0, 429, 31.0) is None  # past max_wait: raise now
    assert p.delay(0, 500, None) is None and p.delay(0, 409, None) is None


def test_sync_client_retries_503_then_succeeds() -> None:
    fake = Scripted([503, 429])
    with serve(fake.handler()) as addr, den.Client(f"http://{addr}", "k") as c:
        c._retry.base = 0.01
        assert c.info().version == "scripted"
    assert fake.paths == ["/v1/info"] * 3


def test_async_client_gives_up_after_max_retries() -> None:
    fake = Scripted([503, 503, 503])

    async def main(addr: str) -> None:
        async with den.AsyncClient(f"http://{addr}", "k", max_retries=2) as c:
            c._retry.base = 0.01
            with pytest.raises(den.UnavailableError) as e:
                await c.info()
            assert str(e.value) == "scripted 503"

    with serve(fake.handler()) as addr:
        asyncio.run(main(addr))
    assert fake.paths == ["/v1/info"] * 3


def test_no_retry_on_other_errors_and_retry_after_is_honoured() -> None:
    fake = Scripted([500])
    with serve(fake.handler()) as addr, den.Client(f"http://{addr}", "k") as c:
        with pytest.raises(den.InternalError):
            c.info()
    assert fake.paths == ["/v1/info"]
    fake = Scripted([429], retry_after="60")
    with serve(fake.handler()) as addr, den.Client(f"http://{addr}", "k") as c:
        with pytest.raises(den.ResourceExhaustedError) as e:
            c.info()
        assert e.value.retry_after == 60.0
    assert fake.paths == ["/v1/info"]


def test_connection_refused_is_a_connection_error() -> None:
    with den.Client("http://127.0.0.1:9", "k") as c, pytest.raises(den.ConnectionError) as e:
        c.info()
    assert str(e.value).startswith("GET /v1/info: ConnectError:")


def test_sync_face_refuses_async_callbacks() -> None:
    async def cb(line: str) -> None:
        pass

    def op():  # type: ignore[no-untyped-def]
        from den._core import callback

        yield callback(cb, "x")

    with den.Client("http://127.0.0.1:9", "k") as c, pytest.raises(TypeError) as e:
        c._run(op())
    assert "pass async callbacks to the async face" in str(e.value)


def test_extract_leaves_out_fifos_and_devices(tmp_path):
    """A download keeps files, directories and links, and leaves out named
    pipes and device nodes instead of failing on them."""
    import io
    import tarfile

    from den import _tar

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello"
        f = tarfile.TarInfo("dir/file.txt")
        f.size = len(data)
        tf.addfile(f, io.BytesIO(data))
        for name, kind in (("dir/pipe", tarfile.FIFOTYPE), ("dir/null", tarfile.CHRTYPE)):
            m = tarfile.TarInfo(name)
            m.type = kind
            tf.addfile(m)
    buf.seek(0)
    _tar.extract(buf, tmp_path / "out")
    assert (tmp_path / "out" / "dir" / "file.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in (tmp_path / "out" / "dir").iterdir()) == ["file.txt"]


def test_cluster_ca_ops_send_the_action_and_parse_the_answer() -> None:
    op = _ops.rotate_cluster_ca(abort=True)
    call = next(op)
    assert (call.method, call.path, call.json) == ("POST", "/v1/cluster/ca/rotate", {"action": "abort"})
    assert next(_ops.rotate_cluster_ca()).json == {"action": "begin"}
    answer = {
        "phase": "trust",
        "generation": 1,
        "signer": {"hash": "sha256:ab", "expires_at": "2036-12-01T23:07:51Z"},
        "next": {"hash": "sha256:cd", "expires_at": "2036-12-04T23:07:51Z"},
        "rotation_started_at": "2026-12-04T23:07:51Z",
        "waiting_servers": ["s2"],
        "waiting_nodes": [],
    }
    with pytest.raises(StopIteration) as done:
        op.send(answer)
    ca = done.value.value
    assert isinstance(ca, den.ClusterCA) and isinstance(ca.next, den.CACert)
    assert (ca.phase, ca.signer.hash, ca.next.hash, ca.previous, ca.waiting_servers) == ("trust", "sha256:ab", "sha256:cd", None, ["s2"])
    assert ca.signer.expires_at is not None and ca.signer.expires_at.year == 2036
    assert ca.rotation_started_at is not None and ca.rotated_at is None
