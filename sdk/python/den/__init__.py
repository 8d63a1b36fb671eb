"""den: sandboxes for AI agents on your own machines.

Two faces with the same method names:

- ``den.Client`` and ``den.Sandbox``: blocking, over ``httpx.Client``;
- ``den.AsyncClient`` and ``den.AsyncSandbox``: asyncio, over
  ``httpx.AsyncClient``, with no threads underneath.

A client talks to den's REST API (/v1) and, for what runs inside a sandbox
(commands, files), to the sandbox's guest agent through the server's envd
proxy. It finds its server in ``url``/``api_key``, else ``DEN_URL`` /
``DEN_API_KEY``, else the env file ``den up`` writes into its data directory.

    import den
    with den.Sandbox.create("busybox") as sb:
        print(sb.commands.run("echo hello").stdout)

Errors are ``den.DenError`` values; those the server answers are
``den.APIError`` subclasses named after their code (``den.NotFoundError``,
...). See docs/sdk-python.md.
"""

from ._async import (
    AsyncAPIKeys,
    AsyncClient,
    AsyncCluster,
    AsyncCommandHandle,
    AsyncCommands,
    AsyncFiles,
    AsyncImages,
    AsyncJoinTokens,
    AsyncNodes,
    AsyncPools,
    AsyncSandbox,
    AsyncSandboxes,
    AsyncSnapshots,
    AsyncSSHKeys,
    AsyncTenants,
    AsyncWatcher,
)
from ._config import default_data_dir, read_env_file
from ._http import VERSION as __version__
from ._sync import (
    APIKeys,
    Client,
    Cluster,
    CommandHandle,
    Commands,
    Files,
    Images,
    JoinTokens,
    Nodes,
    Pools,
    Sandbox,
    Sandboxes,
    Snapshots,
    SSHKeys,
    Tenants,
    Watcher,
)
from ._tar import UnsafeArchiveError
from .errors import (
    AlreadyExistsError,
    APIError,
    BuildError,
    CanceledError,
    CommandExitError,
    ConfigError,
    ConflictError,
    ConnectionError,
    DeadlineExceededError,
    DenError,
    FailedPreconditionError,
    InsufficientStorageError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    ResourceExhaustedError,
    TimeoutError,
    TooLargeError,
    UnauthenticatedError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedError,
)
from .models import (
    APIKey,
    BuildResult,
    ClusterMember,
    ClusterMembers,
    CommandResult,
    CreatedAPIKey,
    EntryInfo,
    FilesystemEvent,
    Image,
    ImageConfig,
    ImageDetails,
    ImageHistory,
    ImageLayer,
    ImageProgress,
    Info,
    JoinToken,
    NetworkPolicy,
    Node,
    NodeDetail,
    OutputChunk,
    Placement,
    Pool,
    PortURL,
    ProcessInfo,
    PruneImagesResult,
    PrunedSnapshot,
    PruneSnapshotsResult,
    PtySize,
    Quota,
    RateLimit,
    RuntimeInfo,
    SandboxInfo,
    SandboxPage,
    SandboxSnapshotUsage,
    Snapshot,
    SnapshotObjectUsage,
    SnapshotUsage,
    SnapshotUsageTotal,
    SSHKey,
    Tenant,
    WriteInfo,
)

SIGTERM = 15
SIGKILL = 9

import types as _types

__all__ = sorted(n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, _types.ModuleType)) + ["__version__"]
