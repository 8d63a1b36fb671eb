"""The objects the den API answers and takes, as dataclasses.

Their fields are those of ``api/openapi.yaml`` (Go: ``api/rest``); unknown
fields of an answer are ignored, so a newer server does not break an older
SDK. Timestamps are timezone-aware :class:`datetime.datetime` values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, Union

__all__ = [
    "NetworkPolicy",
    "SandboxInfo",
    "SandboxPage",
    "Image",
    "ImageDetails",
    "ImageLayer",
    "ImageConfig",
    "ImageHistory",
    "ImageProgress",
    "BuildResult",
    "PruneImagesResult",
    "Snapshot",
    "SnapshotUsage",
    "SandboxSnapshotUsage",
    "SnapshotObjectUsage",
    "SnapshotUsageTotal",
    "PruneSnapshotsResult",
    "PrunedSnapshot",
    "Pool",
    "SSHKey",
    "Quota",
    "RateLimit",
    "Placement",
    "Tenant",
    "APIKey",
    "CreatedAPIKey",
    "JoinToken",
    "RuntimeInfo",
    "NodeDetail",
    "Node",
    "Info",
    "ClusterMember",
    "ClusterMembers",
    "EntryInfo",
    "WriteInfo",
    "FilesystemEvent",
    "ProcessInfo",
    "CommandResult",
    "OutputChunk",
    "PortURL",
    "PtySize",
]

T = TypeVar("T")


# ----- decoding and encoding -------------------------------------------------

_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _hints_cache.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _hints_cache[cls] = h
    return h


def parse_time(v: Any) -> datetime | None:
    """An RFC 3339 timestamp (Go writes nanoseconds, Python keeps micro)."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v
    s = str(v)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # Python 3.11 reads at most 6 fractional digits in some builds: trim.
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tz = rest[:digits], rest[digits:]
        s = f"{head}.{frac[:6]}{tz}" if frac else head + tz
    return datetime.fromisoformat(s)


def _convert(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], v) if args else v
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(item, x) for x in v]
    if origin is dict:
        _, val = typing.get_args(tp) or (Any, Any)
        return {str(k): _convert(val, x) for k, x in v.items()}
    if origin is Literal:
        return v
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_json(tp, v)
    if tp is datetime:
        return parse_time(v)
    if tp is int and not isinstance(v, bool):
        return int(v)
    if tp is float:
        return float(v)
    return v


def from_json(cls: type[T], obj: Any) -> T:
    """An instance of the dataclass cls from a decoded JSON object. Missing
    fields take their defaults; unknown ones are ignored."""
    if not isinstance(obj, dict):
        raise TypeError(f"want a JSON object for {cls.__name__}, got {type(obj).__name__}")
    hints = _hints(cls)
    kw = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in obj and obj[f.name] is not None:
            kw[f.name] = _convert(hints[f.name], obj[f.name])
    return cls(**kw)


def to_json(obj: Any) -> Any:
    """A dataclass (or mapping, list) as JSON-ready values, leaving out None
    fields (the server rejects unknown fields, never absent ones)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


# ----- sandboxes --------------------------------------------------------------


@dataclass
class NetworkPolicy:
    """A sandbox's egress policy. Rules are IPv4 addresses or CIDRs, domains
    (``example.com``) or ``*.example.com``; allow wins over deny, and the rest
    follows ``internet`` (default on). ``NetworkPolicy(internet=False,
    allow=["pypi.org"])`` is "only pypi.org"."""

    internet: bool | None = None
    allow: list[str] | None = None
    deny: list[str] | None = None


@dataclass
class SandboxInfo:
    """A sandbox as the API shows it (GET /v1/sandboxes/{id})."""

    id: str = ""
    name: str = ""
    image: str = ""
    state: str = ""
    reason: str = ""
    runtime: str = ""
    node: str = ""
    cpus: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    timeout: int = 0
    timeout_action: str = ""
    idle_timeout: int = 0
    idle_action: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    last_active_at: datetime | None = None
    idle_expires_at: datetime | None = None
    suspended_at: datetime | None = None
    timeout_left: int = 0
    snapshot_bytes: int = 0
    from_snapshot: str = ""
    network: NetworkPolicy | None = None
    public_ports: list[int] = field(default_factory=list)


@dataclass
class SandboxPage:
    """One page of a sandbox listing; next_page_token is empty on the last."""

    sandboxes: list[SandboxInfo] = field(default_factory=list)
    next_page_token: str = ""


# ----- images -----------------------------------------------------------------


@dataclass
class Image:
    """An image in the node's store."""

    name: str = ""
    id: str = ""
    size: int = 0
    created_at: datetime | None = None
    digest: str = ""


@dataclass
class ImageLayer:
    diff_id: str = ""
    digest: str = ""
    size: int = 0
    media_type: str = ""
    unpacked_size: int = 0


@dataclass
class ImageConfig:
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    exposed_ports: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=list)
    stop_signal: str = ""


@dataclass
class ImageHistory:
    created: datetime | None = None
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False


@dataclass
class ImageDetails(Image):
    """An image with its layers (bottom first), configuration and history."""

    layers: list[ImageLayer] = field(default_factory=list)
    config: ImageConfig = field(default_factory=ImageConfig)
    history: list[ImageHistory] = field(default_factory=list)


@dataclass
class ImageProgress:
    """A progress report of a pull or push: a phase (resolving, downloading,
    unpacking, uploading, exists) of one layer (detail: its digest) and the
    bytes done of total (0 when unknown)."""

    phase: str = ""
    current: int = 0
    total: int = 0
    detail: str = ""


@dataclass
class BuildResult:
    """The outcome of a successful build."""

    image_id: str = ""
    tags: list[str] = field(default_factory=list)
    steps: int = 0
    cached_steps: int = 0
    run_steps: int = 0
    duration_ms: int = 0

    @property
    def id(self) -> str:
        """The image's ID, as :attr:`Image.id`."""
        return self.image_id

    @property
    def name(self) -> str:
        """The first tag, the name a create can use ("" without tags)."""
        return self.tags[0] if self.tags else ""


@dataclass
class PruneImagesResult:
    layers: int = 0
    blobs: int = 0
    bytes: int = 0


# ----- snapshots and pools ----------------------------------------------------


@dataclass
class Snapshot:
    """A saved sandbox; immutable, outlives its source."""

    id: str = ""
    name: str = ""
    sandbox: str = ""
    image: str = ""
    mode: str = ""
    filesystem_image: str = ""
    cpus: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0
    size_bytes: int = 0
    node: str = ""
    created_at: datetime | None = None


@dataclass
class SandboxSnapshotUsage:
    id: str = ""
    name: str = ""
    state: str = ""
    pinned_generation: int = 0
    generations: int = 0
    pending: int = 0
    bytes: int = 0
    files: int = 0


@dataclass
class SnapshotObjectUsage:
    id: str = ""
    name: str = ""
    bytes: int = 0
    files: int = 0
    created_at: datetime | None = None


@dataclass
class SnapshotUsageTotal:
    dirs: int = 0
    bytes: int = 0
    files: int = 0


@dataclass
class SnapshotUsage:
    """The disk the tenant's snapshots take on the node, and the node's totals."""

    node: str = ""
    sandboxes: list[SandboxSnapshotUsage] = field(default_factory=list)
    objects: list[SnapshotObjectUsage] = field(default_factory=list)
    tenant_bytes: int = 0
    node_bytes: int = 0
    node_files: int = 0
    orphan_bytes: int = 0
    by_kind: dict[str, SnapshotUsageTotal] = field(default_factory=dict)


@dataclass
class PrunedSnapshot:
    kind: str = ""
    sandbox: str = ""
    snapshot: str = ""
    generation: int = 0
    bytes: int = 0
    files: int = 0
    reason: str = ""


@dataclass
class PruneSnapshotsResult:
    dry_run: bool = False
    removed: list[PrunedSnapshot] = field(default_factory=list)
    bytes: int = 0


@dataclass
class Pool:
    """A warm pool of started, never-used sandboxes."""

    id: str = ""
    name: str = ""
    image: str = ""
    snapshot: str = ""
    size: int = 0
    ready: int = 0
    waiting: str = ""
    cpus: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0
    user: str = ""
    runtime: str = ""
    created_at: datetime | None = None


# ----- access -----------------------------------------------------------------


@dataclass
class SSHKey:
    id: str = ""
    name: str = ""
    public_key: str = ""
    fingerprint: str = ""
    created_at: datetime | None = None


@dataclass
class Quota:
    """What a tenant may hold at once; 0 is no limit."""

    sandboxes: int = 0
    vcpus: float = 0.0
    memory_mb: int = 0
    snapshots: int = 0


@dataclass
class RateLimit:
    """A token bucket over all the tenant's keys; per_second 0 is no limit."""

    per_second: float = 0.0
    burst: int = 0


@dataclass
class Placement:
    """Where a tenant's sandboxes run in a cluster."""

    node_pools: list[str] = field(default_factory=list)
    overflow_to_shared: bool = False


@dataclass
class Tenant:
    name: str = ""
    quota: Quota = field(default_factory=Quota)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    placement: Placement = field(default_factory=Placement)
    usage: Quota = field(default_factory=Quota)
    created_at: datetime | None = None


@dataclass
class APIKey:
    id: str = ""
    name: str = ""
    tenant: str = ""
    admin: bool = False
    created_at: datetime | None = None
    current: bool = False


@dataclass
class CreatedAPIKey:
    """A new key with its secret, shown this once."""

    key: APIKey = field(default_factory=APIKey)
    secret: str = ""


@dataclass
class JoinToken:
    id: str = ""
    uses: int = 0
    used: int = 0
    pool: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    role: str = ""
    expires_at: datetime | None = None
    created_at: datetime | None = None
    token: str = ""


# ----- nodes and server -------------------------------------------------------


@dataclass
class RuntimeInfo:
    name: str = ""
    isolation: str = ""
    accel: str = ""
    default: bool = False
    suspend: bool = False
    pool: bool = False


@dataclass
class NodeDetail:
    name: str = ""
    pool: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    disk_mb: int = 0
    draining: bool = False
    server: str = ""
    registered_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Node:
    id: str = ""
    state: str = ""
    runtimes: list[RuntimeInfo] = field(default_factory=list)
    cpus: int = 0
    memory_mb: int = 0
    memory_available_mb: int = 0
    sandboxes: int = 0
    version: str = ""
    cluster: NodeDetail | None = None


@dataclass
class Info:
    version: str = ""
    runtimes: list[str] = field(default_factory=list)
    runtime_details: list[RuntimeInfo] = field(default_factory=list)
    node: str = ""


@dataclass
class ClusterMember:
    id: str = ""
    address: str = ""
    role: str = ""
    voter: bool = False
    last_contact_ms: int | None = None


@dataclass
class ClusterMembers:
    server: str = ""
    members: list[ClusterMember] = field(default_factory=list)


@dataclass
class CACert:
    """A CA certificate: hash is "sha256:<hex>", as join tokens carry it."""

    hash: str = ""
    expires_at: datetime | None = None


@dataclass
class ClusterCA:
    """The cluster CA and where a rotation of it stands. phase is "stable",
    "trust" (next is trusted beside the signer) or "sign" (the new CA signs,
    previous is still trusted); the next step waits for waiting_servers and
    waiting_nodes."""

    phase: str = ""
    generation: int = 0
    signer: CACert = field(default_factory=CACert)
    next: CACert | None = None
    previous: CACert | None = None
    rotation_started_at: datetime | None = None
    rotated_at: datetime | None = None
    waiting_servers: list[str] = field(default_factory=list)
    waiting_nodes: list[str] = field(default_factory=list)


# ----- inside a sandbox -------------------------------------------------------


@dataclass
class EntryInfo:
    """A file or directory in a sandbox. type is "file", "dir", "symlink" or
    "other"; mode holds the permission and type bits."""

    name: str = ""
    type: str = ""
    path: str = ""
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_time: datetime | None = None
    symlink_target: str = ""


@dataclass
class WriteInfo:
    """A file written by files.write."""

    path: str = ""
    name: str = ""
    type: str = ""


@dataclass
class FilesystemEvent:
    """A change in a watched directory: name is relative to it, op one of
    create, write, remove, rename, chmod; entry describes it after the change
    when the guest sent it."""

    name: str
    op: str
    entry: EntryInfo | None = None


@dataclass
class ProcessInfo:
    """A running process the guest agent started."""

    pid: int
    tag: str = ""
    cmd: str = ""
    args: list[str] = field(default_factory=list)
    envs: dict[str, str] = field(default_factory=dict)
    cwd: str = ""


@dataclass
class CommandResult:
    """How a command ended, with its output decoded as UTF-8.

    exit_code is -1 when the process was killed by a signal; status is the
    guest's description ("exit status 1", "signal: killed"); error is set
    when the process could not run.
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    exited: bool = True
    status: str = ""
    error: str = ""
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error


@dataclass
class OutputChunk:
    """A piece of a process's output: stream is "stdout", "stderr" or "pty"."""

    stream: Literal["stdout", "stderr", "pty"]
    data: bytes

    @property
    def text(self) -> str:
        """The chunk decoded as UTF-8 (a character split across chunks is
        replaced; collect bytes, or use wait(), for exact text)."""
        return self.data.decode("utf-8", "replace")


@dataclass
class PortURL:
    """The URL of a port inside a sandbox.

    url is the port's own address (``http://8080-<id>.localhost:7071/``), for
    browsers and curl, with headers to send (the access token; none for a
    signed URL). ``*.localhost`` names resolve in browsers and curl only, so
    listener_url is the same request addressed to the sandbox traffic
    listener itself, with listener_headers (headers plus the Host that routes
    it): what a Python HTTP client can always send.
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    listener_url: str = ""
    listener_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PtySize:
    cols: int = 80
    rows: int = 24
