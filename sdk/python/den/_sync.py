"""The blocking face: den.Client and den.Sandbox over httpx.Client.

Every method runs an op of den._ops (the logic, shared with the async face);
this module only moves bytes.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from . import _config
from . import _envd as envd
from . import _ops as ops
from ._core import Call, Op, RetryPolicy, parse_unary, read, retry_after_of, run_sync
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


class _Stream:
    """An opened streaming answer."""

    def __init__(self, resp: httpx.Response):
        self.resp = resp
        self.chunks = resp.iter_raw()

    def close(self) -> None:
        # The chunk generator first: left suspended inside httpcore's
        # response iterator, the garbage collector would finalize it later,
        # at any allocation, and its finalizer takes the connection pool's
        # lock, which the thread may then hold (a deadlock seen in tests).
        self.chunks.close()
        self.resp.close()


class Client:
    """A client of one den server (blocking). Safe to share between threads.

    Args:
        url: the server's base URL; default $DEN_URL, else the env file ``den up``
            wrote into its data directory.
        api_key: the API key; default $DEN_API_KEY, else that env file.
        timeout: seconds an HTTP request may wait to connect, send or read
            (streams that may be quiet, such as a command's output, use their
            own keepalives instead); None for no limit.
        data_dir: den's data directory, where the env file is read.
        sandbox_url: the sandbox traffic listener, for port URLs; default
            $E2B_SANDBOX_URL, else the env file.
        http2: HTTP/2 instead of HTTP/1.1 (prior knowledge over plain http,
            which den serves). Off by default: see docs/sdk-python.md.
        max_retries: retries of a request answered 429 or 503.
    """

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
        self._http = httpx.Client(**client_kwargs(cfg.url, cfg.api_key, timeout, http2))
        self.sandboxes = Sandboxes(self)
        self.images = Images(self)
        self.snapshots = Snapshots(self)
        self.pools = Pools(self)
        self.ssh_keys = SSHKeys(self)
        self.tenants = Tenants(self)
        self.api_keys = APIKeys(self)
        self.tokens = JoinTokens(self)
        self.nodes = Nodes(self)
        self.cluster = Cluster(self)

    # -- the driver --------------------------------------------------------

    def _run(self, op: Op[T]) -> T:
        return run_sync(self._execute, _close, op)

    def _execute(self, call: Call) -> Any:
        kind = call.kind
        if kind == "read":
            with transport_errors(call):
                return next(call.handle.chunks, b"")
        if kind == "close":
            call.handle.close()
            return None
        if kind == "callback":
            assert call.fn is not None
            return call.fn(*call.args)
        resp = self._send(call)
        if kind == "open":
            return _Stream(resp)
        return parse_unary(call, resp.status_code, resp.headers, resp.content)

    def _send(self, call: Call) -> httpx.Response:
        """Send call, retrying 429 and 503; an open call's 2xx answer is left
        unread, every other answer is read."""
        attempt = 0
        while True:
            args = request_args(call, self._timeout)
            if call.stream is not None:
                args["content"] = call.stream
            req = self._http.build_request(**args)
            with transport_errors(call):
                resp = self._http.send(req, stream=call.kind == "open")
                if call.kind == "open" and not 200 <= resp.status_code < 300:
                    resp.read()
                    resp.close()
            if not 200 <= resp.status_code < 300 and call.replayable:
                delay = self._retry.delay(attempt, resp.status_code, retry_after_of(resp.headers))
                if delay is not None:
                    attempt += 1
                    time.sleep(delay)
                    continue
            if call.kind == "open" and not 200 <= resp.status_code < 300:
                raise error_from_body(resp.status_code, resp.content, resp.headers)
            return resp

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"den.Client({self.url!r})"

    # -- top level ---------------------------------------------------------

    def info(self) -> Info:
        """The server's version, runtimes and node (GET /v1/info)."""
        return self._run(ops.info())

    def sandbox(self, id: str, *, user: str | None = None) -> Sandbox:
        """A handle on the sandbox with this ID or name, without asking the
        server (only ``info.id`` is set); user is the in-sandbox user its
        commands and file operations act as."""
        return Sandbox(self, SandboxInfo(id=id), user=user)

    def _sandbox_traffic_url(self) -> str | None:
        return self._sandbox_url or _config.sandbox_url(self._cfg.data_dir)


def _close(h: _Stream) -> None:
    h.close()


class _Group:
    def __init__(self, client: Client):
        self._c = client


class Sandboxes(_Group):
    """Sandboxes: ``client.sandboxes``."""

    def create(
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
    ) -> Sandbox:
        """Create a sandbox and return it running. None leaves a field to the
        server (image "base", 1 CPU, 512 MiB, 2 GiB disk, timeout 300 s).
        See :meth:`Sandbox.create` for the fields."""
        body = ops.create_body(
            image, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, env=env, metadata=metadata,
            timeout=timeout, timeout_action=timeout_action, idle_timeout=idle_timeout, idle_action=idle_action,
            user=user, snapshot=snapshot, pool=pool, runtime=runtime, network=network, public_ports=public_ports,
            capacity_wait=capacity_wait,
        )  # fmt: skip
        return Sandbox(self._c, self._c._run(ops.create_sandbox(body)))

    def get(self, id: str) -> Sandbox:
        """The sandbox with this ID or name; NotFoundError when there is none."""
        return Sandbox(self._c, self._c._run(ops.get_sandbox(id)))

    def list(
        self,
        *,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> Iterator[Sandbox]:
        """Every sandbox matching the filters (any of the states; all the
        metadata pairs), oldest first, fetching pages of limit as needed."""
        token: str | None = None
        while True:
            page = self.list_page(state=state, metadata=metadata, limit=limit, page_token=token)
            for s in page.sandboxes:
                yield Sandbox(self._c, s)
            if not page.next_page_token:
                return
            token = page.next_page_token

    def list_page(
        self,
        *,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> SandboxPage:
        """One page of sandboxes; pass its next_page_token for the next."""
        return self._c._run(ops.list_sandboxes(state=state, metadata=metadata, limit=limit, page_token=page_token))

    def delete(self, id: str) -> None:
        """Delete the sandbox; NotFoundError when there is none."""
        self._c._run(ops.delete_sandbox(id))

    def set_timeout(self, id: str, seconds: int) -> Sandbox:
        """Set the timeout to seconds from now (0 removes it)."""
        return Sandbox(self._c, self._c._run(ops.set_timeout(id, seconds)))

    def suspend(self, id: str) -> Sandbox:
        """Save the running sandbox's state and stop it; returns it suspended.
        FailedPreconditionError when not running, UnsupportedError when its
        runtime cannot suspend."""
        return Sandbox(self._c, self._c._run(ops.suspend(id)))

    def resume(self, id: str) -> Sandbox:
        """Bring a suspended sandbox back; returns it running (any command or
        file call resumes it too)."""
        return Sandbox(self._c, self._c._run(ops.resume(id)))

    def fork(self, id: str, count: int = 1, *, snapshot_name: str | None = None) -> builtins.list[Sandbox]:
        """Checkpoint the running sandbox once and start count copies that
        continue from that point; snapshot_name keeps the checkpoint."""
        return [Sandbox(self._c, s) for s in self._c._run(ops.fork(id, count, snapshot_name))]

    def get_network(self, id: str) -> NetworkPolicy:
        """The sandbox's egress policy."""
        return self._c._run(ops.get_network(id))

    def set_network(self, id: str, policy: NetworkPolicy | Mapping[str, Any]) -> NetworkPolicy:
        """Replace the sandbox's egress policy; it applies at once."""
        return self._c._run(ops.set_network(id, policy))

    def set_port_public(self, id: str, port: int, public: bool = True) -> Sandbox:
        """Make a port's URL public (no token needed) or private again; port
        0 is every port."""
        return Sandbox(self._c, self._c._run(ops.set_port_public(id, port, public)))


class Images(_Group):
    """The server's images: ``client.images``. Changes need an admin key."""

    def list(self) -> list[Image]:
        return self._c._run(ops.list_images())

    def get(self, ref: str) -> ImageDetails:
        """The image (name, ID or unique ID prefix) with its layers, config and
        history; NotFoundError when absent."""
        return self._c._run(ops.get_image(ref))

    inspect = get

    def remove(self, ref: str) -> None:
        """Remove a name (by name) or every name of an image (by ID)."""
        self._c._run(ops.remove_image(ref))

    def tag(self, ref: str, name: str) -> Image:
        """Give the image another name; returns it under that name."""
        return self._c._run(ops.tag_image(ref, name))

    def prune(self) -> PruneImagesResult:
        """Delete the layers and blobs no image uses."""
        return self._c._run(ops.prune_images())

    def import_archive(self, source: ops.Source, *, name: str | None = None) -> Image:
        """Import a docker-archive (``docker save``) or OCI-layout tar: a path,
        bytes, a binary file or an iterable of bytes, streamed as read."""
        return self._c._run(ops.import_image(source, name))

    def export(self, ref: str, dest: str | os.PathLike[str] | IO[bytes], *, format: str | None = None) -> int:
        """Write the image as a tar (format "docker-archive", the default, or
        "oci") to a path or binary file; returns the bytes written."""
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "wb") as f:
                return self._c._run(ops.export_image(ref, f.write, format))
        return self._c._run(ops.export_image(ref, dest.write, format))

    def pull(
        self,
        ref: str,
        *,
        on_progress: Callable[[ImageProgress], Any] | None = None,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        platform: str | None = None,
    ) -> Image:
        """Have the server pull ref from its registry; on_progress gets the
        progress reports as they come."""
        return self._c._run(ops.pull_image(ref, on_progress=on_progress, insecure=insecure, username=username, password=password, platform=platform))

    def push(
        self,
        image: str,
        dest: str,
        *,
        on_progress: Callable[[ImageProgress], Any] | None = None,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        """Have the server push a stored image to the registry reference dest;
        returns the pushed manifest's digest."""
        return self._c._run(ops.push_image(image, dest, on_progress=on_progress, insecure=insecure, username=username, password=password))

    def build(
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
        """Build the image context_dir's Dockerfile describes, named tag(s).
        The context is streamed as a tar (leaving out what .dockerignore
        names); on_log gets each line of build output as it comes. Raises
        BuildError (with its ``log`` tail) when a step fails or the context
        is refused."""
        return self._c._run(ops.build_image(context_dir, tag=tag, dockerfile=dockerfile, build_args=build_args, target=target, no_cache=no_cache, pull=pull, on_log=on_log))


class Snapshots(_Group):
    """Snapshots: ``client.snapshots``."""

    def create(self, sandbox: str, *, name: str | None = None, mode: str | None = None) -> Snapshot:
        """Save a running sandbox (mode "memory", the default: memory,
        processes and files; "filesystem": its files only); it keeps running."""
        return self._c._run(ops.create_snapshot(sandbox, name, mode))

    def get(self, id: str) -> Snapshot:
        return self._c._run(ops.get_snapshot(id))

    def list(self) -> list[Snapshot]:
        return self._c._run(ops.list_snapshots())

    def delete(self, id: str) -> None:
        self._c._run(ops.delete_snapshot(id))

    def usage(self) -> SnapshotUsage:
        """The disk the tenant's snapshots take on the node."""
        return self._c._run(ops.snapshot_usage())

    def prune(self, *, dry_run: bool = False, objects: bool = False, older_than_sec: int | None = None, include_named: bool = False) -> PruneSnapshotsResult:
        """Remove snapshot files nothing references (and, with objects and
        older_than_sec, old snapshot objects)."""
        return self._c._run(ops.prune_snapshots(dry_run=dry_run, objects=objects, older_than_sec=older_than_sec, include_named=include_named))


class Pools(_Group):
    """Warm pools: ``client.pools``."""

    def create(
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
        """Keep size started sandboxes of an image (or snapshot) ready; a create
        of that shape, or naming the pool, claims one."""
        return self._c._run(ops.create_pool(size=size, image=image, snapshot=snapshot, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, user=user, runtime=runtime))

    def get(self, id: str) -> Pool:
        return self._c._run(ops.get_pool(id))

    def list(self) -> list[Pool]:
        return self._c._run(ops.list_pools())

    def resize(self, id: str, size: int) -> Pool:
        return self._c._run(ops.resize_pool(id, size))

    def delete(self, id: str) -> None:
        self._c._run(ops.delete_pool(id))


class SSHKeys(_Group):
    """SSH public keys for den's SSH gateway: ``client.ssh_keys``."""

    def add(self, public_key: str, *, name: str | None = None) -> SSHKey:
        """Register one authorized_keys line for the caller's tenant."""
        return self._c._run(ops.add_ssh_key(public_key, name))

    def list(self) -> list[SSHKey]:
        return self._c._run(ops.list_ssh_keys())

    def delete(self, id: str) -> None:
        self._c._run(ops.delete_ssh_key(id))


class Tenants(_Group):
    """Tenants: ``client.tenants`` (changes need an admin key)."""

    def create(self, name: str, *, quota: Quota | Mapping[str, Any] | None = None, rate_limit: RateLimit | Mapping[str, Any] | None = None, placement: Placement | Mapping[str, Any] | None = None) -> Tenant:
        return self._c._run(ops.create_tenant(name, quota, rate_limit, placement))

    def get(self, name: str) -> Tenant:
        return self._c._run(ops.get_tenant(name))

    def list(self) -> list[Tenant]:
        return self._c._run(ops.list_tenants())

    def update(self, name: str, *, quota: Quota | Mapping[str, Any] | None = None, rate_limit: RateLimit | Mapping[str, Any] | None = None, placement: Placement | Mapping[str, Any] | None = None) -> Tenant:
        """Replace the quota, rate limit or placement given; the rest stays."""
        return self._c._run(ops.update_tenant(name, quota, rate_limit, placement))

    def delete(self, name: str) -> None:
        self._c._run(ops.delete_tenant(name))


class APIKeys(_Group):
    """API keys: ``client.api_keys``."""

    def create(self, *, name: str | None = None, tenant: str | None = None, admin: bool = False, format: str | None = None) -> CreatedAPIKey:
        """A new key; its secret is in the answer only."""
        return self._c._run(ops.create_api_key(name=name, tenant=tenant, admin=admin, format=format))

    def list(self, *, tenant: str | None = None) -> list[APIKey]:
        return self._c._run(ops.list_api_keys(tenant))

    def revoke(self, id: str) -> None:
        self._c._run(ops.revoke_api_key(id))


class JoinTokens(_Group):
    """Join tokens for den agents and servers: ``client.tokens`` (admin)."""

    def create(self, *, ttl_sec: int | None = None, uses: int | None = None, pool: str | None = None, labels: Mapping[str, str] | None = None, role: str | None = None) -> JoinToken:
        return self._c._run(ops.create_join_token(ttl_sec=ttl_sec, uses=uses, pool=pool, labels=labels, role=role))

    def list(self) -> list[JoinToken]:
        return self._c._run(ops.list_join_tokens())

    def delete(self, id: str) -> None:
        self._c._run(ops.delete_join_token(id))


class Nodes(_Group):
    """The nodes that run sandboxes: ``client.nodes``."""

    def list(self) -> list[Node]:
        return self._c._run(ops.list_nodes())

    def get(self, id: str) -> Node:
        return self._c._run(ops.get_node(id))

    def drain(self, id: str) -> Node:
        """Place no new sandboxes on the node (admin; cluster only)."""
        return self._c._run(ops.drain_node(id, True))

    def undrain(self, id: str) -> Node:
        return self._c._run(ops.drain_node(id, False))


class Cluster(_Group):
    """The raft cluster of den servers: ``client.cluster``."""

    def members(self) -> ClusterMembers:
        return self._c._run(ops.cluster_members())

    def ca(self) -> ClusterCA:
        """The cluster CA and where a rotation of it stands (den server only)."""
        return self._c._run(ops.cluster_ca())

    def rotate_ca(self, abort: bool = False) -> ClusterCA:
        """Begin a rotation of the cluster CA; the leader takes its steps in
        the background (see ca()). abort=True drops a rotation whose new CA
        does not sign yet."""
        return self._c._run(ops.rotate_cluster_ca(abort))


# ----- a sandbox ------------------------------------------------------------------


class Sandbox:
    """A handle on one sandbox: its last known state (``info``) and what runs
    inside it (``commands``, ``files``).

    ``with Sandbox.create(...) as sb:`` deletes the sandbox on exit (and
    closes the client it made, if it made one).
    """

    def __init__(self, client: Client, info: SandboxInfo, *, user: str | None = None, owns_client: bool = False):
        self.client = client
        self.info = info
        self.user = user
        self._owns_client = owns_client
        self.commands = Commands(self)
        self.files = Files(self)

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
        return f"den.Sandbox(id={self.id!r}, state={self.state!r})"

    @classmethod
    def create(
        cls,
        image: str | None = None,
        *,
        client: Client | None = None,
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
    ) -> Sandbox:
        """Create a sandbox and return it running.

        Args:
            image: image name or ID (default "base").
            client: the client to use; default a new Client() from the
                environment, owned (closed) by the sandbox.
            name: unique among the tenant's live sandboxes.
            cpus, memory_mb, disk_mb: its size.
            env: environment of every process; metadata: labels to filter on.
            timeout: seconds of running life (default 300, 0 never), then
                timeout_action ("kill" or "suspend").
            idle_timeout: seconds without activity, then idle_action.
            user: default user of its processes and file operations.
            snapshot: start from this snapshot; pool: claim a spare from this
                warm pool; runtime: "gvisor", "qemu", ...
            network: egress policy, a NetworkPolicy or a dict like
                ``{"internet": False, "allow": ["pypi.org"]}``.
            public_ports: ports whose URLs need no token (0 every port).
            capacity_wait: seconds to wait for room in a full cluster.
        """
        owns = client is None
        c = client if client is not None else Client()
        try:
            sb = c.sandboxes.create(
                image, name=name, cpus=cpus, memory_mb=memory_mb, disk_mb=disk_mb, env=env, metadata=metadata,
                timeout=timeout, timeout_action=timeout_action, idle_timeout=idle_timeout, idle_action=idle_action,
                user=user, snapshot=snapshot, pool=pool, runtime=runtime, network=network, public_ports=public_ports,
                capacity_wait=capacity_wait,
            )  # fmt: skip
        except BaseException:
            if owns:
                c.close()
            raise
        sb._owns_client = owns
        return sb

    @classmethod
    def connect(cls, id: str, *, client: Client | None = None) -> Sandbox:
        """A handle on an existing sandbox (by ID or name), fetched from the server."""
        owns = client is None
        c = client if client is not None else Client()
        try:
            sb = c.sandboxes.get(id)
        except BaseException:
            if owns:
                c.close()
            raise
        sb._owns_client = owns
        return sb

    def as_user(self, user: str | None) -> Sandbox:
        """A handle whose commands and file operations act as user."""
        return Sandbox(self.client, self.info, user=user)

    def refresh(self) -> SandboxInfo:
        """Fetch the sandbox's current state into info and return it."""
        self.info = self.client._run(ops.get_sandbox(self.id))
        return self.info

    def kill(self) -> None:
        """Delete the sandbox. Idempotent: a sandbox already gone is fine."""
        self.client._run(ops.delete_sandbox(self.id, missing_ok=True))
        self.close()

    def close(self) -> None:
        """Close the client the sandbox made for itself, if any; the sandbox
        keeps running."""
        if self._owns_client:
            self._owns_client = False
            self.client.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.kill()
        finally:
            self.close()

    def set_timeout(self, seconds: int) -> SandboxInfo:
        self.info = self.client._run(ops.set_timeout(self.id, seconds))
        return self.info

    def suspend(self) -> SandboxInfo:
        self.info = self.client._run(ops.suspend(self.id))
        return self.info

    def resume(self) -> SandboxInfo:
        self.info = self.client._run(ops.resume(self.id))
        return self.info

    def snapshot(self, *, name: str | None = None, mode: str | None = None) -> Snapshot:
        """Save this sandbox as a snapshot; it keeps running."""
        return self.client._run(ops.create_snapshot(self.id, name, mode))

    def fork(self, count: int = 1, *, snapshot_name: str | None = None) -> list[Sandbox]:
        """count running copies of this sandbox."""
        return self.client.sandboxes.fork(self.id, count, snapshot_name=snapshot_name)

    def get_network(self) -> NetworkPolicy:
        return self.client._run(ops.get_network(self.id))

    def set_network(self, policy: NetworkPolicy | Mapping[str, Any]) -> NetworkPolicy:
        return self.client._run(ops.set_network(self.id, policy))

    def set_port_public(self, port: int, public: bool = True) -> SandboxInfo:
        self.info = self.client._run(ops.set_port_public(self.id, port, public))
        return self.info

    def port_url(self, port: int, *, signed: float | None = None) -> PortURL:
        """The URL of a server listening on port inside the sandbox, with the
        header that authorises requests to it; signed=seconds gives a URL that
        works without the header until then."""
        return self.client._run(ops.port_url(self.id, port, self.client._sandbox_traffic_url(), signed))


class Commands:
    """Processes of a sandbox: ``sb.commands``."""

    def __init__(self, sb: Sandbox):
        self._sb = sb

    def _user(self, user: str | None) -> str | None:
        return user or self._sb.user

    def run(
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
        """Run cmd and wait for it: a string runs with ``bash -c`` (``sh -c``
        in images without bash), a list as an argv. Returns its output and
        exit code; a non-zero exit is not an error. on_stdout/on_stderr get
        the output as it comes; stdin is written to it, then closed. After
        timeout seconds the process is killed and TimeoutError raised."""
        c = self._sb.client
        return c._run(ops.run(self._sb.id, cmd, cwd=cwd, envs=envs, user=self._user(user), timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr, stdin=stdin, tag=tag))

    def start(
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
    ) -> CommandHandle:
        """Start cmd and return once it runs: iterate the handle for its
        output as it comes, then wait() for the result. stdin=True keeps its
        input open (send_stdin, close_stdin); pty=(cols, rows) runs it on a
        terminal (all output is "pty"; resize with resize())."""
        size = PtySize(*pty) if isinstance(pty, tuple) else pty
        req = envd.start_request(cmd, envs=envs, cwd=cwd, tag=tag, stdin=stdin, pty=size)
        u = self._user(user)
        reader, pid = self._sb.client._run(ops.start_process(self._sb.id, req, u, timeout, shell=isinstance(cmd, str)))
        return CommandHandle(self._sb.client, ProcessSession(self._sb.id, u, reader, pid, pty=size is not None, timeout=timeout))

    def connect(self, target: int | str, *, user: str | None = None) -> CommandHandle:
        """Attach to a running process by PID (int) or tag (str): its output
        from now on, and its end."""
        u = self._user(user)
        reader, pid = self._sb.client._run(ops.connect_process(self._sb.id, target, u))
        return CommandHandle(self._sb.client, ProcessSession(self._sb.id, u, reader, pid, pty=False, timeout=None))

    def list(self) -> list[ProcessInfo]:
        """The processes the guest agent started that still run."""
        return self._sb.client._run(ops.list_processes(self._sb.id, self._sb.user))

    def kill(self, target: int | str) -> bool:
        """SIGKILL a process by PID or tag; False when none runs."""
        return self._sb.client._run(ops.kill_process(self._sb.id, target, self._sb.user))

    def signal(self, target: int | str, sig: int) -> None:
        """Send SIGTERM (15) or SIGKILL (9)."""
        self._sb.client._run(ops.send_signal(self._sb.id, target, sig, self._sb.user))

    def send_stdin(self, target: int | str, data: bytes | str, *, pty: bool = False) -> None:
        """Write to a process's stdin (started with stdin=True), or with pty
        to its terminal as if typed."""
        b = data.encode() if isinstance(data, str) else bytes(data)
        self._sb.client._run(ops.send_input(self._sb.id, target, b, self._sb.user, pty=pty))

    def close_stdin(self, target: int | str) -> None:
        self._sb.client._run(ops.close_stdin(self._sb.id, target, self._sb.user))

    def resize_pty(self, target: int | str, cols: int, rows: int) -> None:
        self._sb.client._run(ops.resize_pty(self._sb.id, target, PtySize(cols, rows), self._sb.user))


class CommandHandle:
    """A started or attached process. Iterate it for its output; wait() for
    its result. Closing the handle stops reading; the process runs on."""

    def __init__(self, client: Client, session: ProcessSession):
        self._c = client
        self._s = session

    @property
    def pid(self) -> int:
        return self._s.pid

    @property
    def result(self) -> CommandResult | None:
        """The result once the process ended, else None."""
        return self._s.result

    @property
    def exit_code(self) -> int | None:
        return self._s.result.exit_code if self._s.result else None

    def __iter__(self) -> Iterator[OutputChunk]:
        while True:
            chunk = self._c._run(self._s.next_chunk())
            if chunk is None:
                return
            yield chunk

    def wait(self, *, on_stdout: Callable[[str], Any] | None = None, on_stderr: Callable[[str], Any] | None = None) -> CommandResult:
        """Wait for the end; the result holds all its output (also what was
        iterated)."""
        return self._c._run(self._s.wait(on_stdout, on_stderr))

    def send_stdin(self, data: bytes | str) -> None:
        self._c._run(self._s.send_stdin(data))

    def close_stdin(self) -> None:
        self._c._run(self._s.close_stdin())

    def kill(self) -> bool:
        return self._c._run(self._s.kill())

    def signal(self, sig: int) -> None:
        self._c._run(self._s.signal(sig))

    def resize(self, cols: int, rows: int) -> None:
        """Resize the process's terminal (started with pty)."""
        self._c._run(self._s.resize(cols, rows))

    def close(self) -> None:
        """Stop reading the output; the process keeps running."""
        if not self._s.closed:
            self._s.closed = True
            self._s.reader.handle.close()

    def __enter__(self) -> CommandHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Files:
    """The filesystem of a sandbox: ``sb.files``. Relative paths are
    relative to the user's home."""

    def __init__(self, sb: Sandbox):
        self._sb = sb

    def _user(self, user: str | None) -> str | None:
        return user or self._sb.user

    def read(self, path: str, *, user: str | None = None) -> bytes:
        return self._sb.client._run(ops.read_file(self._sb.id, path, self._user(user)))

    def read_text(self, path: str, *, user: str | None = None, encoding: str = "utf-8") -> str:
        return self.read(path, user=user).decode(encoding)

    def read_stream(self, path: str, *, user: str | None = None) -> Iterator[bytes]:
        """The file's bytes in chunks as they arrive (nothing is held whole)."""
        c = self._sb.client
        h = c._run(ops.open_file(self._sb.id, path, self._user(user)))
        try:
            while True:
                chunk = c._run(_read(h))
                if not chunk:
                    return
                yield chunk
        finally:
            h.close()

    def write(self, path: str, data: bytes | str | ops.Source, *, user: str | None = None) -> WriteInfo:
        """Create or replace the file (parents are created): bytes or str whole,
        or a binary file / iterable of bytes / local path streamed as read."""
        return self._sb.client._run(ops.write_file(self._sb.id, path, data, self._user(user)))

    def list(self, path: str, *, depth: int = 1, user: str | None = None) -> list[EntryInfo]:
        return self._sb.client._run(ops.list_dir(self._sb.id, path, depth, self._user(user)))

    def stat(self, path: str, *, user: str | None = None) -> EntryInfo:
        """The entry at path (a symlink itself); NotFoundError when absent."""
        return self._sb.client._run(ops.stat(self._sb.id, path, self._user(user)))

    def exists(self, path: str, *, user: str | None = None) -> bool:
        return self._sb.client._run(ops.exists(self._sb.id, path, self._user(user)))

    def mkdir(self, path: str, *, user: str | None = None, exist_ok: bool = False) -> EntryInfo | None:
        """Create the directory and its parents; AlreadyExistsError when it
        exists, unless exist_ok (then None)."""
        return self._sb.client._run(ops.make_dir(self._sb.id, path, self._user(user), exist_ok))

    def remove(self, path: str, *, user: str | None = None) -> None:
        """Remove the file or directory (recursively)."""
        self._sb.client._run(ops.remove(self._sb.id, path, self._user(user)))

    def move(self, src: str, dst: str, *, user: str | None = None) -> EntryInfo:
        return self._sb.client._run(ops.move(self._sb.id, src, dst, self._user(user)))

    rename = move

    def watch(self, path: str, *, recursive: bool = False, user: str | None = None) -> Watcher:
        """Watch a directory; returns once the watch runs, so changes made after
        are reported. Iterate the Watcher for events; close it when done."""
        reader = self._sb.client._run(ops.start_watch(self._sb.id, path, recursive, self._user(user)))
        return Watcher(self._sb.client, WatchSession(reader, path))

    def upload_dir(self, local_dir: str | os.PathLike[str], remote_dir: str, *, user: str | None = None) -> None:
        """Copy a local directory's contents into remote_dir (created), as one
        tar stream unpacked in the sandbox; modes are kept, owner is user."""
        self._sb.client._run(ops.upload_dir(self._sb.id, local_dir, remote_dir, self._user(user)))

    def download_dir(self, remote_dir: str, local_dir: str | os.PathLike[str] | Path, *, user: str | None = None) -> None:
        """Copy remote_dir's contents into local_dir (created); refuses entries
        that would land outside local_dir (UnsafeArchiveError)."""
        self._sb.client._run(ops.download_dir(self._sb.id, remote_dir, local_dir, self._user(user)))


def _read(h: Any) -> Op[bytes]:
    return (yield read(h))  # type: ignore[no-any-return]


class Watcher:
    """A running watch of a directory: iterate it for FilesystemEvents."""

    def __init__(self, client: Client, session: WatchSession):
        self._c = client
        self._s = session

    def __iter__(self) -> Iterator[FilesystemEvent]:
        while True:
            ev = self._c._run(self._s.next_event())
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        if not self._s.closed:
            self._s.closed = True
            self._s.reader.handle.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
