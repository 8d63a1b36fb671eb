"""The asyncio face: den.AsyncClient and den.AsyncSandbox over
httpx.AsyncClient. No threads: every wait is an await on the event loop.

Every method runs an op of den._ops, the logic it shares with the blocking
face (den._sync, whose docstrings say what each method does); this module
only moves bytes. Callbacks (on_stdout, on_log, on_progress, ...) may be
plain functions or coroutine functions.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from . import _config
from . import _envd as envd
from . import _ops as ops
from ._core import Call, Op, RetryPolicy, parse_unary, read, retry_after_of, run_async
from ._http import client_kwargs, request_args, transport_errors
from ._session import ProcessSession, WatchSession
from .errors import error_from_body
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
)

T = TypeVar("T")


class _AsyncStream:
    """An opened streaming answer."""

    def __init__(self, resp: httpx.Response):
        self.resp = resp
        self.chunks = resp.aiter_raw()

    async def close(self) -> None:
        # The chunk generator first (see den._sync._Stream.close).
        await self.chunks.aclose()  # type: ignore[attr-defined]
        await self.resp.aclose()


async def _aiter(it: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """A request body as httpx.AsyncClient takes it. Chunks of a local file
    are read on the loop: each read is short, and no thread is used."""
    if isinstance(it, AsyncIterable):
        async for chunk in it:
            yield chunk
    else:
        for chunk in it:
            yield chunk


class AsyncClient:
    """A client of one den server for asyncio (see :class:`den.Client` for the
    arguments). Use ``async with AsyncClient() as client:`` or ``await
    client.aclose()``. Safe for any number of concurrent tasks on one loop."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = 60.0,
        data_dir: str | os.PathLike[str] | None = None,
        sandbox_url: str | None = None,
        http2: bool = False,
        max_retries: int = 3,
    ):
        cfg = _config.resolve(url, api_key, data_dir)
        self.url = cfg.url
        self._cfg = cfg
        self._sandbox_url = _config.check_url(sandbox_url, "sandbox traffic address") if sandbox_url else None
        self._timeout = timeout
        self._retry = RetryPolicy(max_retries=max_retries)
        self._http = httpx.AsyncClient(**client_kwargs(cfg.url, cfg.api_key, timeout, http2))
        self.sandboxes = AsyncSandboxes(self)
        self.images = AsyncImages(self)
        self.snapshots = AsyncSnapshots(self)
        self.pools = AsyncPools(self)
        self.ssh_keys = AsyncSSHKeys(self)
        self.tenants = AsyncTenants(self)
        self.api_keys = AsyncAPIKeys(self)
        self.tokens = AsyncJoinTokens(self)
        self.nodes = AsyncNodes(self)
        self.cluster = AsyncCluster(self)

    # -- the driver --------------------------------------------------------

    async def _run(self, op: Op[T]) -> T:
        return await run_async(self._execute, _aclose, op)

    async def _execute(self, call: Call) -> Any:
        kind = call.kind
        if kind == "read":
            with transport_errors(call):
                return await anext(call.handle.chunks, b"")
        if kind == "close":
            await call.handle.close()
            return None
        if kind == "callback":
            assert call.fn is not None
            return call.fn(*call.args)
        resp = await self._send(call)
        if kind == "open":
            return _AsyncStream(resp)
        return parse_unary(call, resp.status_code, resp.headers, resp.content)

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            args = request_args(call, self._timeout)
            if call.stream is not None:
                args["content"] = _aiter(call.stream)
            req = self._http.build_request(**args)
            with transport_errors(call):
                resp = await self._http.send(req, stream=call.kind == "open")
                if call.kind == "open" and not 200 <= resp.status_code < 300:
                    await resp.aread()
                    await resp.aclose()
            if not 200 <= resp.status_code < 300 and call.replayable:
                delay = self._retry.delay(attempt, resp.status_code, retry_after_of(resp.headers))
                if delay is not None:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
            if call.kind == "open" and not 200 <= resp.status_code < 300:
                raise error_from_body(resp.status_code, resp.content, resp.headers)
            return resp

    # -- lifecycle ---------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"den.AsyncClient({self.url!r})"

    # -- top level ---------------------------------------------------------

    async def info(self) -> Info:
        return await self._run(ops.info())

    def sandbox(self, id: str, *, user: str | None = None) -> AsyncSandbox:
        """A handle on the sandbox with this ID or name, without asking the server."""
        return AsyncSandbox(self, SandboxInfo(id=id), user=user)

    def _sandbox_traffic_url(self) -> str | None:
        return self._sandbox_url or _config.sandbox_url(self._cfg.data_dir)


async def _aclose(h: _AsyncStream) -> None:
    await h.close()


class _Group:
    def __init__(self, client: AsyncClient):
        self._c = client


class AsyncSandboxes(_Group):
    """Sandboxes: ``client.sandboxes`` (see den.Sandboxes)."""

    async def create(
        self,
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
    ) -> AsyncSandbox:
        body = ops.create_body(
            image, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, env=env, metadata=metadata,
            timeout=timeout, timeout_action=timeout_action, idle_timeout=idle_timeout, idle_action=idle_action,
            user=user, snapshot=snapshot, pool=pool, runtime=runtime, network=network, public_ports=public_ports,
            capacity_wait=capacity_wait,
        )  # fmt: skip
        return AsyncSandbox(self._c, await self._c._run(ops.create_sandbox(body)))

    async def get(self, id: str) -> AsyncSandbox:
        return AsyncSandbox(self._c, await self._c._run(ops.get_sandbox(id)))

    async def list(
        self,
        *,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AsyncSandbox]:
        """``async for sb in client.sandboxes.list(...)``: every match, paged."""
        token: str | None = None
        while True:
            page = await self.list_page(state=state, metadata=metadata, limit=limit, page_token=token)
            for s in page.sandboxes:
                yield AsyncSandbox(self._c, s)
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def list_page(
        self,
        *,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> SandboxPage:
        return await self._c._run(ops.list_sandboxes(state=state, metadata=metadata, limit=limit, page_token=page_token))

    async def delete(self, id: str) -> None:
        await self._c._run(ops.delete_sandbox(id))

    async def set_timeout(self, id: str, seconds: int) -> AsyncSandbox:
        return AsyncSandbox(self._c, await self._c._run(ops.set_timeout(id, seconds)))

    async def suspend(self, id: str) -> AsyncSandbox:
        return AsyncSandbox(self._c, await self._c._run(ops.suspend(id)))

    async def resume(self, id: str) -> AsyncSandbox:
        return AsyncSandbox(self._c, await self._c._run(ops.resume(id)))

    async def fork(self, id: str, count: int = 1, *, snapshot_name: str | None = None) -> builtins.list[AsyncSandbox]:
        return [AsyncSandbox(self._c, s) for s in await self._c._run(ops.fork(id, count, snapshot_name))]

    async def get_network(self, id: str) -> NetworkPolicy:
        return await self._c._run(ops.get_network(id))

    async def set_network(self, id: str, policy: NetworkPolicy | Mapping[str, Any]) -> NetworkPolicy:
        return await self._c._run(ops.set_network(id, policy))

    async def set_port_public(self, id: str, port: int, public: bool = True) -> AsyncSandbox:
        return AsyncSandbox(self._c, await self._c._run(ops.set_port_public(id, port, public)))


class AsyncImages(_Group):
    """The server's images: ``client.images`` (see den.Images)."""

    async def list(self) -> list[Image]:
        return await self._c._run(ops.list_images())

    async def get(self, ref: str) -> ImageDetails:
        return await self._c._run(ops.get_image(ref))

    inspect = get

    async def remove(self, ref: str) -> None:
        await self._c._run(ops.remove_image(ref))

    async def tag(self, ref: str, name: str) -> Image:
        return await self._c._run(ops.tag_image(ref, name))

    async def prune(self) -> PruneImagesResult:
        return await self._c._run(ops.prune_images())

    async def import_archive(self, source: ops.Source, *, name: str | None = None) -> Image:
        return await self._c._run(ops.import_image(source, name))

    async def export(self, ref: str, dest: str | os.PathLike[str] | IO[bytes], *, format: str | None = None) -> int:
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "wb") as f:
                return await self._c._run(ops.export_image(ref, f.write, format))
        return await self._c._run(ops.export_image(ref, dest.write, format))

    async def pull(
        self,
        ref: str,
        *,
        on_progress: Callable[[ImageProgress], Any] | None = None,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        platform: str | None = None,
    ) -> Image:
        return await self._c._run(ops.pull_image(ref, on_progress=on_progress, insecure=insecure, username=username, password=password, platform=platform))

    async def push(
        self,
        image: str,
        dest: str,
        *,
        on_progress: Callable[[ImageProgress], Any] | None = None,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        return await self._c._run(ops.push_image(image, dest, on_progress=on_progress, insecure=insecure, username=username, password=password))

    async def build(
        self,
        context_dir: str | os.PathLike[str],
        *,
        tag: str | Sequence[str] | None = None,
        dockerfile: str | os.PathLike[str] | None = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        no_cache: bool = False,
        pull: bool = False,
        on_log: Callable[[str], Any] | None = None,
    ) -> BuildResult:
        return await self._c._run(ops.build_image(context_dir, tag=tag, dockerfile=dockerfile, build_args=build_args, target=target, no_cache=no_cache, pull=pull, on_log=on_log))


class AsyncSnapshots(_Group):
    """Snapshots: ``client.snapshots`` (see den.Snapshots)."""

    async def create(self, sandbox: str, *, name: str | None = None, mode: str | None = None) -> Snapshot:
        return await self._c._run(ops.create_snapshot(sandbox, name, mode))

    async def get(self, id: str) -> Snapshot:
        return await self._c._run(ops.get_snapshot(id))

    async def list(self) -> list[Snapshot]:
        return await self._c._run(ops.list_snapshots())

    async def delete(self, id: str) -> None:
        await self._c._run(ops.delete_snapshot(id))

    async def usage(self) -> SnapshotUsage:
        return await self._c._run(ops.snapshot_usage())

    async def prune(self, *, dry_run: bool = False, objects: bool = False, older_than_sec: int | None = None, include_named: bool = False) -> PruneSnapshotsResult:
        return await self._c._run(ops.prune_snapshots(dry_run=dry_run, objects=objects, older_than_sec=older_than_sec, include_named=include_named))


class AsyncPools(_Group):
    """Warm pools: ``client.pools`` (see den.Pools)."""

    async def create(
        self,
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
    ) -> Pool:
        return await self._c._run(ops.create_pool(size=size, image=image, snapshot=snapshot, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, user=user, runtime=runtime))

    async def get(self, id: str) -> Pool:
        return await self._c._run(ops.get_pool(id))

    async def list(self) -> list[Pool]:
        return await self._c._run(ops.list_pools())

    async def resize(self, id: str, size: int) -> Pool:
        return await self._c._run(ops.resize_pool(id, size))

    async def delete(self, id: str) -> None:
        await self._c._run(ops.delete_pool(id))


class AsyncSSHKeys(_Group):
    """SSH public keys: ``client.ssh_keys`` (see den.SSHKeys)."""

    async def add(self, public_key: str, *, name: str | None = None) -> SSHKey:
        return await self._c._run(ops.add_ssh_key(public_key, name))

    async def list(self) -> list[SSHKey]:
        return await self._c._run(ops.list_ssh_keys())

    async def delete(self, id: str) -> None:
        await self._c._run(ops.delete_ssh_key(id))


class AsyncTenants(_Group):
    """Tenants: ``client.tenants`` (see den.Tenants)."""

    async def create(self, name: str, *, quota: Quota | Mapping[str, Any] | None = None, rate_limit: RateLimit | Mapping[str, Any] | None = None, placement: Placement | Mapping[str, Any] | None = None) -> Tenant:
        return await self._c._run(ops.create_tenant(name, quota, rate_limit, placement))

    async def get(self, name: str) -> Tenant:
        return await self._c._run(ops.get_tenant(name))

    async def list(self) -> list[Tenant]:
        return await self._c._run(ops.list_tenants())

    async def update(self, name: str, *, quota: Quota | Mapping[str, Any] | None = None, rate_limit: RateLimit | Mapping[str, Any] | None = None, placement: Placement | Mapping[str, Any] | None = None) -> Tenant:
        return await self._c._run(ops.update_tenant(name, quota, rate_limit, placement))

    async def delete(self, name: str) -> None:
        await self._c._run(ops.delete_tenant(name))


class AsyncAPIKeys(_Group):
    """API keys: ``client.api_keys`` (see den.APIKeys)."""

    async def create(self, *, name: str | None = None, tenant: str | None = None, admin: bool = False, format: str | None = None) -> CreatedAPIKey:
        return await self._c._run(ops.create_api_key(name=name, tenant=tenant, admin=admin, format=format))

    async def list(self, *, tenant: str | None = None) -> list[APIKey]:
        return await self._c._run(ops.list_api_keys(tenant))

    async def revoke(self, id: str) -> None:
        await self._c._run(ops.revoke_api_key(id))


class AsyncJoinTokens(_Group):
    """Join tokens: ``client.tokens`` (see den.JoinTokens)."""

    async def create(self, *, ttl_sec: int | None = None, uses: int | None = None, pool: str | None = None, labels: Mapping[str, str] | None = None, role: str | None = None) -> JoinToken:
        return await self._c._run(ops.create_join_token(ttl_sec=ttl_sec, uses=uses, pool=pool, labels=labels, role=role))

    async def list(self) -> list[JoinToken]:
        return await self._c._run(ops.list_join_tokens())

    async def delete(self, id: str) -> None:
        await self._c._run(ops.delete_join_token(id))


class AsyncNodes(_Group):
    """Nodes: ``client.nodes`` (see den.Nodes)."""

    async def list(self) -> list[Node]:
        return await self._c._run(ops.list_nodes())

    async def get(self, id: str) -> Node:
        return await self._c._run(ops.get_node(id))

    async def drain(self, id: str) -> Node:
        return await self._c._run(ops.drain_node(id, True))

    async def undrain(self, id: str) -> Node:
        return await self._c._run(ops.drain_node(id, False))


class AsyncCluster(_Group):
    """The raft cluster: ``client.cluster`` (see den.Cluster)."""

    async def members(self) -> ClusterMembers:
        return await self._c._run(ops.cluster_members())

    async def ca(self) -> ClusterCA:
        return await self._c._run(ops.cluster_ca())

    async def rotate_ca(self, abort: bool = False) -> ClusterCA:
        return await self._c._run(ops.rotate_cluster_ca(abort))


# ----- a sandbox ------------------------------------------------------------------


class AsyncSandbox:
    """A handle on one sandbox for asyncio (see :class:`den.Sandbox`).

    ``async with await AsyncSandbox.create(...) as sb:`` deletes it on exit.
    """

    def __init__(self, client: AsyncClient, info: SandboxInfo, *, user: str | None = None, owns_client: bool = False):
        self.client = client
        self.info = info
        self.user = user
        self._owns_client = owns_client
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def state(self) -> str:
        return self.info.state

    def __repr__(self) -> str:
        return f"den.AsyncSandbox(id={self.id!r}, state={self.state!r})"

    @classmethod
    async def create(
        cls,
        image: str | None = None,
        *,
        client: AsyncClient | None = None,
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
    ) -> AsyncSandbox:
        """Create a sandbox (see den.Sandbox.create); without client, one made
        from the environment is owned, and closed, by the sandbox."""
        owns = client is None
        c = client if client is not None else AsyncClient()
        try:
            sb = await c.sandboxes.create(
                image, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, env=env, metadata=metadata,
                timeout=timeout, timeout_action=timeout_action, idle_timeout=idle_timeout, idle_action=idle_action,
                user=user, snapshot=snapshot, pool=pool, runtime=runtime, network=network, public_ports=public_ports,
                capacity_wait=capacity_wait,
            )  # fmt: skip
        except BaseException:
            if owns:
                await c.aclose()
            raise
        sb._owns_client = owns
        return sb

    @classmethod
    async def connect(cls, id: str, *, client: AsyncClient | None = None) -> AsyncSandbox:
        owns = client is None
        c = client if client is not None else AsyncClient()
        try:
            sb = await c.sandboxes.get(id)
        except BaseException:
            if owns:
                await c.aclose()
            raise
        sb._owns_client = owns
        return sb

    def as_user(self, user: str | None) -> AsyncSandbox:
        return AsyncSandbox(self.client, self.info, user=user)

    async def refresh(self) -> SandboxInfo:
        self.info = await self.client._run(ops.get_sandbox(self.id))
        return self.info

    async def kill(self) -> None:
        """Delete the sandbox; idempotent."""
        await self.client._run(ops.delete_sandbox(self.id, missing_ok=True))
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client the sandbox made for itself, if any."""
        if self._owns_client:
            self._owns_client = False
            await self.client.aclose()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.kill()
        finally:
            await self.aclose()

    async def set_timeout(self, seconds: int) -> SandboxInfo:
        self.info = await self.client._run(ops.set_timeout(self.id, seconds))
        return self.info

    async def suspend(self) -> SandboxInfo:
        self.info = await self.client._run(ops.suspend(self.id))
        return self.info

    async def resume(self) -> SandboxInfo:
        self.info = await self.client._run(ops.resume(self.id))
        return self.info

    async def snapshot(self, *, name: str | None = None, mode: str | None = None) -> Snapshot:
        return await self.client._run(ops.create_snapshot(self.id, name, mode))

    async def fork(self, count: int = 1, *, snapshot_name: str | None = None) -> list[AsyncSandbox]:
        return await self.client.sandboxes.fork(self.id, count, snapshot_name=snapshot_name)

    async def get_network(self) -> NetworkPolicy:
        return await self.client._run(ops.get_network(self.id))

    async def set_network(self, policy: NetworkPolicy | Mapping[str, Any]) -> NetworkPolicy:
        return await self.client._run(ops.set_network(self.id, policy))

    async def set_port_public(self, port: int, public: bool = True) -> SandboxInfo:
        self.info = await self.client._run(ops.set_port_public(self.id, port, public))
        return self.info

    async def port_url(self, port: int, *, signed: float | None = None) -> PortURL:
        return await self.client._run(ops.port_url(self.id, port, self.client._sandbox_traffic_url(), signed))


class AsyncCommands:
    """Processes of a sandbox: ``sb.commands`` (see den.Commands)."""

    def __init__(self, sb: AsyncSandbox):
        self._sb = sb

    def _user(self, user: str | None) -> str | None:
        return user or self._sb.user

    async def run(
        self,
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
    ) -> CommandResult:
        """Run cmd (bash -c for a string, an argv for a list) and wait for it;
        a non-zero exit is not an error; TimeoutError (process killed) after
        timeout seconds."""
        c = self._sb.client
        return await c._run(ops.run(self._sb.id, cmd, cwd=cwd, envs=envs, user=self._user(user), timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr, stdin=stdin, tag=tag))

    async def start(
        self,
        cmd: str | Sequence[str],
        *,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        tag: str | None = None,
        stdin: bool = False,
        pty: PtySize | tuple[int, int] | None = None,
    ) -> AsyncCommandHandle:
        """Start cmd; ``async for chunk in handle`` streams its output and
        ``await handle.wait()`` gives its result."""
        size = PtySize(*pty) if isinstance(pty, tuple) else pty
        req = envd.start_request(cmd, envs=envs, cwd=cwd, tag=tag, stdin=stdin, pty=size)
        u = self._user(user)
        reader, pid = await self._sb.client._run(ops.start_process(self._sb.id, req, u, timeout, shell=isinstance(cmd, str)))
        return AsyncCommandHandle(self._sb.client, ProcessSession(self._sb.id, u, reader, pid, pty=size is not None, timeout=timeout))

    async def connect(self, target: int | str, *, user: str | None = None) -> AsyncCommandHandle:
        u = self._user(user)
        reader, pid = await self._sb.client._run(ops.connect_process(self._sb.id, target, u))
        return AsyncCommandHandle(self._sb.client, ProcessSession(self._sb.id, u, reader, pid, pty=False, timeout=None))

    async def list(self) -> list[ProcessInfo]:
        return await self._sb.client._run(ops.list_processes(self._sb.id, self._sb.user))

    async def kill(self, target: int | str) -> bool:
        return await self._sb.client._run(ops.kill_process(self._sb.id, target, self._sb.user))

    async def signal(self, target: int | str, sig: int) -> None:
        await self._sb.client._run(ops.send_signal(self._sb.id, target, sig, self._sb.user))

    async def send_stdin(self, target: int | str, data: bytes | str, *, pty: bool = False) -> None:
        b = data.encode() if isinstance(data, str) else bytes(data)
        await self._sb.client._run(ops.send_input(self._sb.id, target, b, self._sb.user, pty=pty))

    async def close_stdin(self, target: int | str) -> None:
        await self._sb.client._run(ops.close_stdin(self._sb.id, target, self._sb.user))

    async def resize_pty(self, target: int | str, cols: int, rows: int) -> None:
        await self._sb.client._run(ops.resize_pty(self._sb.id, target, PtySize(cols, rows), self._sb.user))


class AsyncCommandHandle:
    """A started or attached process (see den.CommandHandle)."""

    def __init__(self, client: AsyncClient, session: ProcessSession):
        self._c = client
        self._s = session

    @property
    def pid(self) -> int:
        return self._s.pid

    @property
    def result(self) -> CommandResult | None:
        return self._s.result

    @property
    def exit_code(self) -> int | None:
        return self._s.result.exit_code if self._s.result else None

    def __aiter__(self) -> AsyncIterator[OutputChunk]:
        return self

    async def __anext__(self) -> OutputChunk:
        chunk = await self._c._run(self._s.next_chunk())
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def wait(self, *, on_stdout: Callable[[str], Any] | None = None, on_stderr: Callable[[str], Any] | None = None) -> CommandResult:
        return await self._c._run(self._s.wait(on_stdout, on_stderr))

    async def send_stdin(self, data: bytes | str) -> None:
        await self._c._run(self._s.send_stdin(data))

    async def close_stdin(self) -> None:
        await self._c._run(self._s.close_stdin())

    async def kill(self) -> bool:
        return await self._c._run(self._s.kill())

    async def signal(self, sig: int) -> None:
        await self._c._run(self._s.signal(sig))

    async def resize(self, cols: int, rows: int) -> None:
        await self._c._run(self._s.resize(cols, rows))

    async def aclose(self) -> None:
        """Stop reading the output; the process keeps running."""
        if not self._s.closed:
            self._s.closed = True
            await self._s.reader.handle.close()

    async def __aenter__(self) -> AsyncCommandHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncFiles:
    """The filesystem of a sandbox: ``sb.files`` (see den.Files)."""

    def __init__(self, sb: AsyncSandbox):
        self._sb = sb

    def _user(self, user: str | None) -> str | None:
        return user or self._sb.user

    async def read(self, path: str, *, user: str | None = None) -> bytes:
        return await self._sb.client._run(ops.read_file(self._sb.id, path, self._user(user)))

    async def read_text(self, path: str, *, user: str | None = None, encoding: str = "utf-8") -> str:
        return (await self.read(path, user=user)).decode(encoding)

    async def read_stream(self, path: str, *, user: str | None = None) -> AsyncIterator[bytes]:
        """``async for chunk in sb.files.read_stream(path)``."""
        c = self._sb.client
        h = await c._run(ops.open_file(self._sb.id, path, self._user(user)))
        try:
            while True:
                chunk = await c._run(_read(h))
                if not chunk:
                    return
                yield chunk
        finally:
            await h.close()

    async def write(self, path: str, data: bytes | str | ops.Source, *, user: str | None = None) -> WriteInfo:
        """Write bytes or str, or stream a binary file, local path, iterable or
        async iterable of bytes."""
        return await self._sb.client._run(ops.write_file(self._sb.id, path, data, self._user(user)))

    async def list(self, path: str, *, depth: int = 1, user: str | None = None) -> list[EntryInfo]:
        return await self._sb.client._run(ops.list_dir(self._sb.id, path, depth, self._user(user)))

    async def stat(self, path: str, *, user: str | None = None) -> EntryInfo:
        return await self._sb.client._run(ops.stat(self._sb.id, path, self._user(user)))

    async def exists(self, path: str, *, user: str | None = None) -> bool:
        return await self._sb.client._run(ops.exists(self._sb.id, path, self._user(user)))

    async def mkdir(self, path: str, *, user: str | None = None, exist_ok: bool = False) -> EntryInfo | None:
        return await self._sb.client._run(ops.make_dir(self._sb.id, path, self._user(user), exist_ok))

    async def remove(self, path: str, *, user: str | None = None) -> None:
        await self._sb.client._run(ops.remove(self._sb.id, path, self._user(user)))

    async def move(self, src: str, dst: str, *, user: str | None = None) -> EntryInfo:
        return await self._sb.client._run(ops.move(self._sb.id, src, dst, self._user(user)))

    rename = move

    async def watch(self, path: str, *, recursive: bool = False, user: str | None = None) -> AsyncWatcher:
        """Watch a directory; returns once the watch runs. ``async for ev in
        watcher``; ``await watcher.aclose()`` (or ``async with``) when done."""
        reader = await self._sb.client._run(ops.start_watch(self._sb.id, path, recursive, self._user(user)))
        return AsyncWatcher(self._sb.client, WatchSession(reader, path))

    async def upload_dir(self, local_dir: str | os.PathLike[str], remote_dir: str, *, user: str | None = None) -> None:
        await self._sb.client._run(ops.upload_dir(self._sb.id, local_dir, remote_dir, self._user(user)))

    async def download_dir(self, remote_dir: str, local_dir: str | os.PathLike[str] | Path, *, user: str | None = None) -> None:
        await self._sb.client._run(ops.download_dir(self._sb.id, remote_dir, local_dir, self._user(user)))


def _read(h: Any) -> Op[bytes]:
    return (yield read(h))  # type: ignore[no-any-return]


class AsyncWatcher:
    """A running watch (see den.Watcher): ``async for ev in watcher``."""

    def __init__(self, client: AsyncClient, session: WatchSession):
        self._c = client
        self._s = session

    def __aiter__(self) -> AsyncIterator[FilesystemEvent]:
        return self

    async def __anext__(self) -> FilesystemEvent:
        ev = await self._c._run(self._s.next_event())
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def aclose(self) -> None:
        if not self._s.closed:
            self._s.closed = True
            await self._s.reader.handle.close()

    async def __aenter__(self) -> AsyncWatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
