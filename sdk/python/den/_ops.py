"""Every operation of the SDK, written once as an op (see _core).

The faces call these and run them; nothing here does I/O itself except
reading local files that are being uploaded and writing local files that are
being downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from . import _envd as envd
from . import _tar
from ._core import BodyStream, Call, Op, callback, close, q, read, seg, user_headers
from .errors import APIError, BuildError, CommandExitError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, NotFoundError, ProtocolError, TimeoutError, status_of_code
from .models import (
    APIKey,
    BuildResult,
    ClusterCA,
    ClusterMembers,
    CommandResult,
    CreatedAPIKey,
    EntryInfo,
    FilesystemEvent,
    Image,
    ImageDetails,
    ImageProgress,
    Info,
    JoinToken,
    NetworkPolicy,
    Node,
    OutputChunk,
    Placement,
    Pool,
    PortURL,
    ProcessInfo,
    PruneImagesResult,
    PruneSnapshotsResult,
    PtySize,
    Quota,
    RateLimit,
    SandboxInfo,
    SandboxPage,
    Snapshot,
    SnapshotUsage,
    SSHKey,
    Tenant,
    WriteInfo,
    from_json,
    to_json,
)

# ----- sandboxes ---------------------------------------------------------------


def sandbox_path(id: str) -> str:
    return "/v1/sandboxes/" + seg(id)


def create_body(
    image: str | None = None,
    *,
    name: str | None = None,
    cpus: float | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    env: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    timeout: int | None = None,
    timeout_action: str | None = None,
    idle_timeout: int | None = None,
    idle_action: str | None = None,
    user: str | None = None,
    snapshot: str | None = None,
    pool: str | None = None,
    runtime: str | None = None,
    network: NetworkPolicy | Mapping[str, Any] | None = None,
    public_ports: Sequence[int] | None = None,
    capacity_wait: int | None = None,
) -> dict[str, Any]:
    """The body of POST /v1/sandboxes; None leaves a field to the server."""
    body = {
        "image": image,
        "name": name,
        "cpus": cpus,
        "memory_mb": memory_mb,
        "disk_mb": disk_mb,
        "env": dict(env) if env else None,
        "metadata": dict(metadata) if metadata else None,
        "timeout": timeout,
        "timeout_action": timeout_action,
        "idle_timeout": idle_timeout,
        "idle_action": idle_action,
        "user": user,
        "snapshot": snapshot,
        "pool": pool,
        "runtime": runtime,
        "network": to_json(network) if network is not None else None,
        "public_ports": list(public_ports) if public_ports is not None else None,
        "capacity_wait": capacity_wait,
    }
    return {k: v for k, v in body.items() if v is not None}


def create_sandbox(body: Mapping[str, Any]) -> Op[SandboxInfo]:
    r = yield Call(method="POST", path="/v1/sandboxes", json=dict(body))
    return from_json(SandboxInfo, r)


def get_sandbox(id: str) -> Op[SandboxInfo]:
    r = yield Call(path=sandbox_path(id))
    return from_json(SandboxInfo, r)


def list_sandboxes(
    *,
    state: str | Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    limit: int | None = None,
    page_token: str | None = None,
) -> Op[SandboxPage]:
    if state is not None and not isinstance(state, str):
        state = ",".join(state)
    meta = [f"{k}={metadata[k]}" for k in sorted(metadata)] if metadata else None
    r = yield Call(path="/v1/sandboxes", query=q(state=state or None, metadata=meta, limit=limit, page_token=page_token or None))
    return from_json(SandboxPage, r)


def delete_sandbox(id: str, *, missing_ok: bool = False) -> Op[None]:
    try:
        yield Call(method="DELETE", path=sandbox_path(id), expect="none")
    except NotFoundError:
        if not missing_ok:
            raise


def set_timeout(id: str, seconds: int) -> Op[SandboxInfo]:
    r = yield Call(method="POST", path=sandbox_path(id) + "/timeout", json={"timeout": int(seconds)})
    return from_json(SandboxInfo, r)


def suspend(id: str) -> Op[SandboxInfo]:
    r = yield Call(method="POST", path=sandbox_path(id) + "/suspend")
    return from_json(SandboxInfo, r)


def resume(id: str) -> Op[SandboxInfo]:
    r = yield Call(method="POST", path=sandbox_path(id) + "/resume")
    return from_json(SandboxInfo, r)


def fork(id: str, count: int = 1, snapshot_name: str | None = None) -> Op[list[SandboxInfo]]:
    body: dict[str, Any] = {"count": int(count)}
    if snapshot_name:
        body["snapshot_name"] = snapshot_name
    r = yield Call(method="POST", path=sandbox_path(id) + "/fork", json=body)
    return [from_json(SandboxInfo, s) for s in r.get("sandboxes") or []]


def get_network(id: str) -> Op[NetworkPolicy]:
    r = yield Call(path=sandbox_path(id) + "/network")
    return from_json(NetworkPolicy, r)


def set_network(id: str, policy: NetworkPolicy | Mapping[str, Any]) -> Op[NetworkPolicy]:
    r = yield Call(method="PUT", path=sandbox_path(id) + "/network", json=to_json(policy))
    return from_json(NetworkPolicy, r)


def set_port_public(id: str, port: int, public: bool = True) -> Op[SandboxInfo]:
    r = yield Call(method="PUT", path=f"{sandbox_path(id)}/ports/{int(port)}", json={"public": bool(public)})
    return from_json(SandboxInfo, r)


def port_signature(token: str, id: str, port: int, expires: int) -> str:
    """rest.PortSignature: "v1_" and the unpadded base64url HMAC-SHA256, keyed
    by the sandbox's access token, of "port:<id>:<port>:<expires>"."""
    mac = hmac.new(token.encode(), f"port:{id}:{port}:{expires}".encode(), hashlib.sha256).digest()
    return "v1_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def port_url(id: str, port: int, sandbox_url: str | None, signed: float | None = None) -> Op[PortURL]:
    """The URL of port on the sandbox traffic listener. den's /v1 API does not
    show a sandbox's access token, so it is read, as `den port` reads it, from
    the E2B facade's GET /sandboxes/{id} on the same listener."""
    if not sandbox_url:
        raise ValueError("the sandbox traffic address is unknown: pass sandbox_url to the client or set E2B_SANDBOX_URL (den up writes it to <data-dir>/env)")
    if not 0 < int(port) < 65536:
        raise ValueError(f"invalid port {port}: want 1 to 65535")
    d = yield Call(path="/sandboxes/" + seg(id))
    token, sid = d.get("envdAccessToken", ""), d.get("sandboxID", id)
    if not token:
        raise ProtocolError(f"get sandbox {id}: the server returned no access token")
    base = urlsplit(sandbox_url)
    host = f"{int(port)}-{sid}.{d.get('domain') or 'localhost'}"
    if base.port:
        host += f":{base.port}"
    url = f"{base.scheme}://{host}/"
    listener = f"{base.scheme}://{base.netloc}/"
    headers = {"X-Access-Token": token}
    if signed is not None:
        if signed <= 0:
            raise ValueError("signed: want a positive number of seconds")
        exp = int(time.time() + signed)
        query = "?" + urlencode({"den_signature": port_signature(token, sid, int(port), exp), "den_expires": exp})
        url, listener, headers = url + query, listener + query, {}
    return PortURL(url=url, headers=headers, listener_url=listener, listener_headers={**headers, "Host": host})


# ----- snapshots --------------------------------------------------------------


def create_snapshot(sandbox: str, name: str | None = None, mode: str | None = None) -> Op[Snapshot]:
    body = {"sandbox": sandbox, "name": name, "mode": mode}
    r = yield Call(method="POST", path="/v1/snapshots", json={k: v for k, v in body.items() if v})
    return from_json(Snapshot, r)


def get_snapshot(id: str) -> Op[Snapshot]:
    r = yield Call(path="/v1/snapshots/" + seg(id))
    return from_json(Snapshot, r)


def list_snapshots() -> Op[list[Snapshot]]:
    r = yield Call(path="/v1/snapshots")
    return [from_json(Snapshot, s) for s in r.get("snapshots") or []]


def delete_snapshot(id: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/snapshots/" + seg(id), expect="none")


def snapshot_usage() -> Op[SnapshotUsage]:
    r = yield Call(path="/v1/snapshots/usage")
    return from_json(SnapshotUsage, r)


def prune_snapshots(
    *, dry_run: bool = False, objects: bool = False, older_than_sec: int | None = None, include_named: bool = False
) -> Op[PruneSnapshotsResult]:
    body: dict[str, Any] = {}
    if dry_run:
        body["dry_run"] = True
    if objects:
        body["objects"] = True
    if older_than_sec is not None:
        body["older_than_sec"] = int(older_than_sec)
    if include_named:
        body["include_named"] = True
    r = yield Call(method="POST", path="/v1/snapshots/prune", json=body)
    return from_json(PruneSnapshotsResult, r)


# ----- pools ------------------------------------------------------------------


def create_pool(
    *,
    size: int,
    image: str | None = None,
    snapshot: str | None = None,
    name: str | None = None,
    cpus: float | None = None,
    memory_mb: int | None = None,
    disk_mb: int | None = None,
    user: str | None = None,
    runtime: str | None = None,
) -> Op[Pool]:
    body = {
        "size": int(size),
        "image": image,
        "snapshot": snapshot,
        "name": name,
        "cpus": cpus,
        "memory_mb": memory_mb,
        "disk_mb": disk_mb,
        "user": user,
        "runtime": runtime,
    }
    r = yield Call(method="POST", path="/v1/pools", json={k: v for k, v in body.items() if v is not None})
    return from_json(Pool, r)


def get_pool(id: str) -> Op[Pool]:
    r = yield Call(path="/v1/pools/" + seg(id))
    return from_json(Pool, r)


def list_pools() -> Op[list[Pool]]:
    r = yield Call(path="/v1/pools")
    return [from_json(Pool, p) for p in r.get("pools") or []]


def resize_pool(id: str, size: int) -> Op[Pool]:
    r = yield Call(method="PATCH", path="/v1/pools/" + seg(id), json={"size": int(size)})
    return from_json(Pool, r)


def delete_pool(id: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/pools/" + seg(id), expect="none")


# ----- SSH keys, tenants, API keys, join tokens ---------------------------------


def add_ssh_key(public_key: str, name: str | None = None) -> Op[SSHKey]:
    body = {"public_key": public_key}
    if name:
        body["name"] = name
    r = yield Call(method="POST", path="/v1/ssh-keys", json=body)
    return from_json(SSHKey, r)


def list_ssh_keys() -> Op[list[SSHKey]]:
    r = yield Call(path="/v1/ssh-keys")
    return [from_json(SSHKey, k) for k in r.get("ssh_keys") or []]


def delete_ssh_key(id: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/ssh-keys/" + seg(id), expect="none")


LimitsArg = Quota | Mapping[str, Any] | None


def _limits(quota: LimitsArg, rate_limit: RateLimit | Mapping[str, Any] | None, placement: Placement | Mapping[str, Any] | None) -> dict[str, Any]:
    out = {}
    if quota is not None:
        out["quota"] = to_json(quota)
    if rate_limit is not None:
        out["rate_limit"] = to_json(rate_limit)
    if placement is not None:
        out["placement"] = to_json(placement)
    return out


def create_tenant(name: str, quota: LimitsArg = None, rate_limit: Any = None, placement: Any = None) -> Op[Tenant]:
    r = yield Call(method="POST", path="/v1/tenants", json={"name": name, **_limits(quota, rate_limit, placement)})
    return from_json(Tenant, r)


def get_tenant(name: str) -> Op[Tenant]:
    r = yield Call(path="/v1/tenants/" + seg(name))
    return from_json(Tenant, r)


def list_tenants() -> Op[list[Tenant]]:
    r = yield Call(path="/v1/tenants")
    return [from_json(Tenant, t) for t in r or []]


def update_tenant(name: str, quota: LimitsArg = None, rate_limit: Any = None, placement: Any = None) -> Op[Tenant]:
    r = yield Call(method="PATCH", path="/v1/tenants/" + seg(name), json=_limits(quota, rate_limit, placement))
    return from_json(Tenant, r)


def delete_tenant(name: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/tenants/" + seg(name), expect="none")


def create_api_key(*, name: str | None = None, tenant: str | None = None, admin: bool = False, format: str | None = None) -> Op[CreatedAPIKey]:
    body = {"name": name, "tenant": tenant, "admin": admin or None, "format": format}
    r = yield Call(method="POST", path="/v1/keys", json={k: v for k, v in body.items() if v is not None})
    return from_json(CreatedAPIKey, r)


def list_api_keys(tenant: str | None = None) -> Op[list[APIKey]]:
    r = yield Call(path="/v1/keys", query=q(tenant=tenant or None))
    return [from_json(APIKey, k) for k in r or []]


def revoke_api_key(id: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/keys/" + seg(id), expect="none")


def create_join_token(
    *,
    ttl_sec: int | None = None,
    uses: int | None = None,
    pool: str | None = None,
    labels: Mapping[str, str] | None = None,
    role: str | None = None,
) -> Op[JoinToken]:
    body = {"ttl_sec": ttl_sec, "uses": uses, "pool": pool, "labels": dict(labels) if labels else None, "role": role}
    r = yield Call(method="POST", path="/v1/tokens", json={k: v for k, v in body.items() if v is not None})
    return from_json(JoinToken, r)


def list_join_tokens() -> Op[list[JoinToken]]:
    r = yield Call(path="/v1/tokens")
    return [from_json(JoinToken, t) for t in r.get("tokens") or []]


def delete_join_token(id: str) -> Op[None]:
    yield Call(method="DELETE", path="/v1/tokens/" + seg(id), expect="none")


# ----- nodes, cluster, info ------------------------------------------------------


def list_nodes() -> Op[list[Node]]:
    r = yield Call(path="/v1/nodes")
    return [from_json(Node, n) for n in r.get("nodes") or []]


def get_node(id: str) -> Op[Node]:
    r = yield Call(path="/v1/nodes/" + seg(id))
    return from_json(Node, r)


def drain_node(id: str, drain: bool = True) -> Op[Node]:
    r = yield Call(method="POST", path="/v1/nodes/" + seg(id) + ("/drain" if drain else "/undrain"))
    return from_json(Node, r)


def cluster_members() -> Op[ClusterMembers]:
    r = yield Call(path="/v1/cluster/members")
    return from_json(ClusterMembers, r)


def cluster_ca() -> Op[ClusterCA]:
    r = yield Call(path="/v1/cluster/ca")
    return from_json(ClusterCA, r)


def rotate_cluster_ca(abort: bool = False) -> Op[ClusterCA]:
    r = yield Call(method="POST", path="/v1/cluster/ca/rotate", json={"action": "abort" if abort else "begin"})
    return from_json(ClusterCA, r)


def info() -> Op[Info]:
    r = yield Call(path="/v1/info")
    return from_json(Info, r)


# ----- images -------------------------------------------------------------------


def image_path(ref: str) -> str:
    return "/v1/images/" + seg(ref)


def list_images() -> Op[list[Image]]:
    r = yield Call(path="/v1/images")
    return [from_json(Image, i) for i in r.get("images") or []]


def get_image(ref: str) -> Op[ImageDetails]:
    r = yield Call(path=image_path(ref))
    return from_json(ImageDetails, r)


def remove_image(ref: str) -> Op[None]:
    yield Call(method="DELETE", path=image_path(ref), expect="none")


def tag_image(ref: str, name: str) -> Op[Image]:
    r = yield Call(method="POST", path=image_path(ref) + "/tag", json={"name": name})
    return from_json(Image, r)


def prune_images() -> Op[PruneImagesResult]:
    r = yield Call(method="POST", path="/v1/images/prune")
    return from_json(PruneImagesResult, r)


Source = str | os.PathLike[str] | bytes | IO[bytes] | BodyStream


def body_of(source: Source) -> tuple[bytes | None, BodyStream | None, IO[bytes] | None]:
    """(content, stream, file to close) of an upload: bytes are sent whole; a
    path, a binary file or an iterable of bytes is streamed as it is read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None, None
    if isinstance(source, (str, os.PathLike)):
        f = open(source, "rb")
        return None, file_chunks(f), f
    if hasattr(source, "read"):
        return None, file_chunks(source), None  # type: ignore[arg-type]
    return None, source, None


def file_chunks(f: IO[bytes], size: int = _tar.CHUNK) -> Iterator[bytes]:
    while True:
        data = f.read(size)
        if not data:
            return
        if isinstance(data, str):
            raise TypeError("want a binary file (opened with 'rb'), got a text file")
        yield data


def import_image(source: Source, name: str | None = None) -> Op[Image]:
    content, stream, owned = body_of(source)
    try:
        r = yield Call(
            method="POST",
            path="/v1/images",
            query=q(name=name or None),
            content=content,
            stream=stream,
            headers=(("Content-Type", "application/x-tar"),),
        )
    finally:
        if owned is not None:
            owned.close()
    return from_json(Image, r)


def export_image(ref: str, sink: Callable[[bytes], Any], format: str | None = None) -> Op[int]:
    h = yield Call(kind="open", path=image_path(ref) + "/export", query=q(format=format or None), headers=(("Accept", "application/x-tar, application/json"),))
    return (yield from drain(h, sink))


def drain(h: Any, sink: Callable[[bytes], Any]) -> Op[int]:
    """Read an opened answer to its end into sink; the byte count."""
    n = 0
    while True:
        chunk = yield read(h)
        if not chunk:
            break
        sink(chunk)
        n += len(chunk)
    yield close(h)
    return n


class LineReader:
    """The lines of an opened NDJSON answer, read across calls."""

    def __init__(self, handle: Any):
        self.handle = handle
        self._buf = b""
        self._lines: deque[bytes] = deque()
        self._eof = False

    def next_line(self) -> Op[dict[str, Any] | None]:
        """The next line decoded, or None at the end of the answer."""
        while not self._lines:
            if self._eof:
                return None
            chunk = yield read(self.handle)
            if not chunk:
                self._eof = True
                if self._buf.strip():
                    self._lines.append(self._buf)
                self._buf = b""
                continue
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            self._lines.extend(line for line in lines if line.strip())
        line = self._lines.popleft()
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ProtocolError(f"the server sent a malformed stream line: {e}") from None
        if not isinstance(obj, dict):
            raise ProtocolError("the server sent a stream line that is not a JSON object")
        return obj


def _stream_error(ev: dict[str, Any]) -> APIError | None:
    err = ev.get("error")
    if not err:
        return None
    from .errors import error_for

    code = str(err.get("code", ""))
    return error_for(str(err.get("message", "")), code=code, status=status_of_code(code))


def _image_events(path: str, body: dict[str, Any], on_progress: Callable[[ImageProgress], Any] | None, key: str) -> Op[Any]:
    h = yield Call(kind="open", method="POST", path=path, json=body, headers=(("Accept", "application/x-ndjson, application/json"),), read_timeout=None)
    lines = LineReader(h)
    while True:
        ev = yield from lines.next_line()
        if ev is None:
            raise ProtocolError("the server ended the answer without a result")
        if (err := _stream_error(ev)) is not None:
            raise err
        if ev.get("progress") and on_progress is not None:
            yield callback(on_progress, from_json(ImageProgress, ev["progress"]))
        if ev.get(key):
            yield close(h)
            return ev[key]


def pull_image(
    ref: str,
    *,
    on_progress: Callable[[ImageProgress], Any] | None = None,
    insecure: bool = False,
    username: str | None = None,
    password: str | None = None,
    platform: str | None = None,
) -> Op[Image]:
    body = {"ref": ref, "insecure": insecure or None, "username": username, "password": password, "platform": platform}
    img = yield from _image_events("/v1/images/pull", {k: v for k, v in body.items() if v}, on_progress, "image")
    return from_json(Image, img)


def push_image(
    image: str,
    dest: str,
    *,
    on_progress: Callable[[ImageProgress], Any] | None = None,
    insecure: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Op[str]:
    body = {"image": image, "dest": dest, "insecure": insecure or None, "username": username, "password": password}
    digest = yield from _image_events("/v1/images/push", {k: v for k, v in body.items() if v}, on_progress, "digest")
    return str(digest)


# How many lines of build output a BuildError keeps.
BUILD_LOG_TAIL = 50


def build_image(
    context_dir: str | os.PathLike[str],
    *,
    tag: str | Sequence[str] | None = None,
    dockerfile: str | os.PathLike[str] | None = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    no_cache: bool = False,
    pull: bool = False,
    on_log: Callable[[str], Any] | None = None,
) -> Op[BuildResult]:
    bc = _tar.BuildContext(context_dir, dockerfile)
    tags = [tag] if isinstance(tag, str) else list(tag or [])
    query = q(
        t=tags,
        dockerfile=bc.dockerfile if bc.dockerfile != "Dockerfile" else None,
        target=target,
        build_arg=[f"{k}={v}" for k, v in (build_args or {}).items()],
        no_cache=no_cache,
        pull=pull,
    )
    try:
        h = yield Call(
            kind="open",
            method="POST",
            path="/v1/images/build",
            query=query,
            stream=bc.stream(),
            headers=(("Content-Type", "application/x-tar"), ("Accept", "application/x-ndjson, application/json")),
            read_timeout=None,
        )
    except APIError as e:
        if e.code in ("invalid_argument", "too_large", "failed_precondition"):
            raise BuildError(e.message, code=e.code, status=e.status) from None
        raise
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    lines = LineReader(h)
    while True:
        ev = yield from lines.next_line()
        if ev is None:
            raise BuildError("the server ended the build without a result", log=list(tail))
        if (err := _stream_error(ev)) is not None:
            raise BuildError(err.message, code=err.code, status=err.status, log=list(tail))
        if "log" in ev:
            tail.append(str(ev["log"]))
            if on_log is not None:
                yield callback(on_log, str(ev["log"]))
        if ev.get("result"):
            yield close(h)
            return from_json(BuildResult, ev["result"])


# ----- inside a sandbox: processes ----------------------------------------------


def envd_path(id: str, rest: str) -> str:
    return sandbox_path(id) + "/envd/" + rest


def rpc(id: str, method: str, msg: Mapping[str, Any], user: str | None) -> Op[dict[str, Any]]:
    """A unary Connect call of the guest agent."""
    r = yield Call(method="POST", path=envd_path(id, method), json=dict(msg), headers=envd.UNARY_HEADERS + user_headers(user))
    return r or {}


def open_stream(id: str, method: str, msg: Mapping[str, Any], user: str | None, timeout: float | None = None) -> Op[Any]:
    h = yield Call(
        kind="open",
        method="POST",
        path=envd_path(id, method),
        content=envd.envelope(msg),
        headers=envd.stream_headers(timeout) + user_headers(user),
        read_timeout=envd.STREAM_READ_TIMEOUT,
    )
    return h


class MessageReader:
    """The messages of an opened Connect stream, read across calls. An error
    that ends the stream is raised after the messages that came before it."""

    def __init__(self, handle: Any, what: str):
        self.handle = handle
        self.what = what
        self._dec = envd.EnvelopeDecoder()
        self._pending: deque[dict[str, Any]] = deque()
        self._error: Exception | None = None
        self.done = False

    def next_message(self) -> Op[dict[str, Any] | None]:
        """The next message, or None once the stream ended cleanly."""
        while not self._pending:
            if self._error is not None:
                err, self._error = self._error, None
                self.done = True
                raise err
            if self._dec.ended:
                self.done = True
                return None
            chunk = yield read(self.handle)
            if not chunk:
                self._dec.finish(self.what)
                continue
            try:
                for m in self._dec.feed(chunk):
                    self._pending.append(m)
            except Exception as e:
                self._error = e
        return self._pending.popleft()

    def finish(self) -> Op[None]:
        """Read what is left of the stream after the message the caller
        wanted (the end envelope, then the end of the HTTP body), a few
        reads at most, and drop it: a response closed before its end takes
        its connection along, and the next call would dial a new one."""
        for _ in range(4):
            try:
                chunk = yield read(self.handle)
            except Exception:
                return
            if not chunk:
                return


def next_process_event(r: MessageReader) -> Op[envd.Started | OutputChunk | envd.Ended | None]:
    """The next event of a process stream (keepalives skipped); None at the
    end of the stream."""
    while True:
        msg = yield from r.next_message()
        if msg is None:
            return None
        ev = envd.process_event(msg)
        if ev is not None:
            return ev


def start_process(id: str, req: Mapping[str, Any], user: str | None, timeout: float | None, shell: bool = False) -> Op[tuple[MessageReader, int]]:
    """Start a process and read up to its start event: (reader, pid). shell
    says req runs a command line (envd.start_request of a string): one the
    image has no bash for runs with /bin/sh."""
    if shell and id in _NO_BASH:
        return (yield from _attach(id, "process.Process/Start", envd.with_fallback_shell(req), user, timeout, "start process"))
    try:
        return (yield from _attach(id, "process.Process/Start", req, user, timeout, "start process"))
    except InvalidArgumentError as e:
        if not shell or not envd.is_bash_missing(e):
            raise
    _NO_BASH[id] = None
    while len(_NO_BASH) > _NO_BASH_MAX:
        _NO_BASH.popitem(last=False)
    return (yield from _attach(id, "process.Process/Start", envd.with_fallback_shell(req), user, timeout, "start process"))


# The sandboxes whose guest answered that their image has no bash: their
# command lines start with /bin/sh at once, not after a refused start of
# bash each time (a round trip). Oldest forgotten first; IDs are not reused.
_NO_BASH: OrderedDict[str, None] = OrderedDict()
_NO_BASH_MAX = 4096


def connect_process(id: str, target: int | str, user: str | None) -> Op[tuple[MessageReader, int]]:
    """Attach to a running process: (reader, pid) once attached."""
    return (yield from _attach(id, "process.Process/Connect", {"process": envd.selector(target)}, user, None, f"connect to process {target!r}"))


def _attach(id: str, method: str, msg: Mapping[str, Any], user: str | None, timeout: float | None, what: str) -> Op[tuple[MessageReader, int]]:
    h = yield from open_stream(id, method, msg, user, timeout)
    r = MessageReader(h, what)
    try:
        ev = yield from next_process_event(r)
        if not isinstance(ev, envd.Started):
            raise ProtocolError(f"{what}: the stream did not begin with the process's start")
    except Exception:
        # A start the guest refused ends the stream with its error. The op
        # may go on (start_process tries /bin/sh), so the stream is read to
        # its end (its connection is kept) and closed here, not left to the
        # runner.
        yield from r.finish()
        yield close(h)
        raise
    return r, ev.pid


def send_input(id: str, target: int | str, data: bytes, user: str | None, pty: bool = False) -> Op[None]:
    for i in range(0, max(len(data), 1), INPUT_CHUNK):
        piece = {"pty" if pty else "stdin": envd.b64(data[i : i + INPUT_CHUNK])}
        yield from rpc(id, "process.Process/SendInput", {"process": envd.selector(target), "input": piece}, user)


# A SendInput's data per request: under the server's 1 MiB bound on JSON
# bodies once base64 grows it by a third.
INPUT_CHUNK = 512 << 10


def close_stdin(id: str, target: int | str, user: str | None) -> Op[None]:
    yield from rpc(id, "process.Process/CloseStdin", {"process": envd.selector(target)}, user)


def send_signal(id: str, target: int | str, sig: int, user: str | None) -> Op[None]:
    yield from rpc(id, "process.Process/SendSignal", {"process": envd.selector(target), "signal": envd.signal_name(sig)}, user)


def kill_process(id: str, target: int | str, user: str | None) -> Op[bool]:
    """SIGKILL target; False when no such process runs."""
    try:
        yield from send_signal(id, target, 9, user)
    except NotFoundError:
        return False
    return True


def resize_pty(id: str, target: int | str, size: PtySize, user: str | None) -> Op[None]:
    msg = {"process": envd.selector(target), "pty": {"size": {"cols": int(size.cols), "rows": int(size.rows)}}}
    yield from rpc(id, "process.Process/Update", msg, user)


def list_processes(id: str, user: str | None) -> Op[list[ProcessInfo]]:
    r = yield from rpc(id, "process.Process/List", {}, user)
    return [envd.process_info(p) for p in r.get("processes") or []]


def _as_bytes(data: bytes | str | None) -> bytes | None:
    if data is None:
        return None
    return data.encode() if isinstance(data, str) else bytes(data)


def run(
    id: str,
    cmd: str | Sequence[str],
    *,
    cwd: str | None = None,
    envs: Mapping[str, str] | None = None,
    user: str | None = None,
    timeout: float | None = None,
    on_stdout: Callable[[str], Any] | None = None,
    on_stderr: Callable[[str], Any] | None = None,
    stdin: bytes | str | None = None,
    tag: str | None = None,
) -> Op[CommandResult]:
    """Run cmd to its end and collect its output (see Commands.run)."""
    data = _as_bytes(stdin)
    req = envd.start_request(cmd, envs=envs, cwd=cwd, tag=tag, stdin=data is not None)
    t0 = time.monotonic()
    col = envd.OutputCollector(on_stdout, on_stderr)
    pid = 0
    try:
        r, pid = yield from start_process(id, req, user, timeout, shell=isinstance(cmd, str))
        if data is not None:
            try:
                yield from send_input(id, pid, data, user)
                yield from close_stdin(id, pid, user)
            except (NotFoundError, FailedPreconditionError):
                # It ended, or closed its stdin, before reading all its input
                # ("process not found", "stdin of process N is closed"): its
                # output and end are on the stream all the same.
                pass
        while True:
            ev = yield from next_process_event(r)
            if ev is None:
                raise ProtocolError("run: the stream ended without the process's exit status")
            if isinstance(ev, OutputChunk):
                for cb, text in col.add(ev):
                    yield callback(cb, text)
            elif isinstance(ev, envd.Ended):
                for cb, text in col.flush():
                    yield callback(cb, text)
                yield from r.finish()
                yield close(r.handle)
                if timeout is not None and not ev.exited and time.monotonic() - t0 >= timeout:
                    raise TimeoutError(f"command timed out after {timeout:g}s (killed)")
                return col.result(ev, pid)
    except DeadlineExceededError:
        # The guest kills the process at its deadline too; make sure.
        if pid:
            try:
                yield from kill_process(id, pid, user)
            except APIError:
                pass
        raise TimeoutError(f"command timed out after {timeout:g}s (killed)") from None


# ----- inside a sandbox: files ---------------------------------------------------


def read_file(id: str, path: str, user: str | None) -> Op[bytes]:
    r = yield Call(path=envd_path(id, "files"), query=q(path=path), headers=user_headers(user), expect="bytes")
    return r  # type: ignore[no-any-return]


def open_file(id: str, path: str, user: str | None) -> Op[Any]:
    h = yield Call(kind="open", path=envd_path(id, "files"), query=q(path=path), headers=user_headers(user))
    return h


def read_file_to(id: str, path: str, user: str | None, sink: Callable[[bytes], Any]) -> Op[int]:
    h = yield from open_file(id, path, user)
    return (yield from drain(h, sink))


def write_file(id: str, path: str, data: bytes | str | Source, user: str | None) -> Op[WriteInfo]:
    if isinstance(data, str):
        data = data.encode()
    content, stream, owned = body_of(data)
    try:
        r = yield Call(
            method="POST",
            path=envd_path(id, "files"),
            query=q(path=path),
            content=content,
            stream=stream,
            headers=(("Content-Type", "application/octet-stream"),) + user_headers(user),
        )
    finally:
        if owned is not None:
            owned.close()
    first = r[0] if isinstance(r, list) and r else {}
    return from_json(WriteInfo, first) if first else WriteInfo(path=path)


def stat(id: str, path: str, user: str | None) -> Op[EntryInfo]:
    r = yield from rpc(id, "filesystem.Filesystem/Stat", {"path": path}, user)
    return envd.entry(r.get("entry") or {})


def exists(id: str, path: str, user: str | None) -> Op[bool]:
    try:
        yield from stat(id, path, user)
    except NotFoundError:
        return False
    return True


def list_dir(id: str, path: str, depth: int, user: str | None) -> Op[list[EntryInfo]]:
    r = yield from rpc(id, "filesystem.Filesystem/ListDir", {"path": path, "depth": max(1, int(depth))}, user)
    return [envd.entry(e) for e in r.get("entries") or []]


def make_dir(id: str, path: str, user: str | None, exist_ok: bool = False) -> Op[EntryInfo | None]:
    try:
        r = yield from rpc(id, "filesystem.Filesystem/MakeDir", {"path": path}, user)
    except APIError as e:
        if exist_ok and e.code == "already_exists":
            return None
        raise
    return envd.entry(r.get("entry") or {})


def remove(id: str, path: str, user: str | None) -> Op[None]:
    yield from rpc(id, "filesystem.Filesystem/Remove", {"path": path}, user)


def move(id: str, src: str, dst: str, user: str | None) -> Op[EntryInfo]:
    r = yield from rpc(id, "filesystem.Filesystem/Move", {"source": src, "destination": dst}, user)
    return envd.entry(r.get("entry") or {})


def start_watch(id: str, path: str, recursive: bool, user: str | None) -> Op[MessageReader]:
    """Open a watch and read up to its start: changes after this are seen."""
    msg = {"path": path, "recursive": bool(recursive), "includeEntry": True}
    h = yield from open_stream(id, "filesystem.Filesystem/WatchDir", msg, user)
    r = MessageReader(h, f"watch {path}")
    while True:
        m = yield from r.next_message()
        if m is None:
            raise ProtocolError(f"watch {path}: the stream ended before the watch started")
        if envd.watch_event(m) is True:
            return r


def next_watch_event(r: MessageReader) -> Op[FilesystemEvent | None]:
    while True:
        m = yield from r.next_message()
        if m is None:
            return None
        ev = envd.watch_event(m)
        if isinstance(ev, FilesystemEvent):
            return ev


# Unpacks the tar $1 into the directory $2 and removes $1. GNU tar needs -p
# to keep modes when not root; busybox tar keeps them and has no -p. -o
# leaves ownership to the user that unpacks.
UNTAR = (
    'trap \'rm -f -- "$1"\' EXIT; mkdir -p -- "$2" || exit; '
    'if tar --version 2>/dev/null | grep -q GNU; then tar -x -o -p -f "$1" -C "$2"; '
    'else tar -x -o -f "$1" -C "$2"; fi'
)
# Packs the directory $2 into the tar $1.
TAR = 'tar -c -f "$1" -C "$2" .'


def _tmp_tar() -> str:
    return f"/tmp/.den-sdk-{secrets.token_hex(8)}.tar"


def upload_dir(id: str, local_dir: str | os.PathLike[str], remote_dir: str, user: str | None) -> Op[None]:
    root = Path(local_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"upload_dir: {root} is not a directory")
    tmp = _tmp_tar()
    yield from write_file(id, tmp, _tar.stream(_tar.walk(root)), user)
    res = yield from run(id, ["/bin/sh", "-c", UNTAR, "sh", tmp, remote_dir], user=user)
    if res.exit_code != 0:
        raise CommandExitError(f"unpack into {remote_dir}: {res.stderr.strip() or res.status}", exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)


def download_dir(id: str, remote_dir: str, local_dir: str | os.PathLike[str], user: str | None) -> Op[None]:
    info = yield from stat(id, remote_dir, user)
    if info.type != "dir":
        raise NotADirectoryError(f"download_dir: {remote_dir} is not a directory in the sandbox")
    tmp = _tmp_tar()
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as spool:
        try:
            res = yield from run(id, ["/bin/sh", "-c", TAR, "sh", tmp, remote_dir], user=user)
            if res.exit_code != 0:
                raise CommandExitError(f"pack {remote_dir}: {res.stderr.strip() or res.status}", exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr)
            yield from read_file_to(id, tmp, user, spool.write)
        except Exception:
            yield from _quiet_remove(id, tmp, user)
            raise
        yield from _quiet_remove(id, tmp, user)
        spool.seek(0)
        _tar.extract(spool, local_dir)


def _quiet_remove(id: str, path: str, user: str | None) -> Op[None]:
    try:
        yield from remove(id, path, user)
    except APIError:
        pass
