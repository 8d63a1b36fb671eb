export interface ErrorBody {
    code: "internal" | "not_found" | "already_exists" | "invalid_argument" | "failed_precondition" | "conflict" | "resource_exhausted" | "unavailable" | "unsupported" | "unauthenticated" | "permission_denied" | "insufficient_storage" | "canceled" | "too_large";
    message: string;
}
export interface CreateSandboxRequest {
    /** Default "base". */
    image?: string;
    name?: string;
    /** Default 1. */
    cpus?: number;
    /** Default 512. */
    memoryMB?: number;
    /** Default 2048. */
    diskMB?: number;
    env?: Record<string, string>;
    metadata?: Record<string, string>;
    /** seconds of running life; 0 = never. Default 300. */
    timeout?: number;
    /** Default "kill". */
    timeoutAction?: "kill" | "suspend";
    /** seconds without activity; 0 = never. Default 0. */
    idleTimeout?: number;
    /** Default "kill". */
    idleAction?: "kill" | "suspend";
    user?: string;
    /** snapshot ID or name to start from (mode memory: its processes continue; mode filesystem: a cold boot on its files); image, cpus, memory_mb, disk_mb, env and user are the snapshot's and must be unset. */
    snapshot?: string;
    /** warm pool ID or name to claim a spare from; image, snapshot, cpus, memory_mb, disk_mb and user are the pool's and must be unset. */
    pool?: string;
    /** runtime to run on (GET /v1/info lists them); empty = the node's default; a memory snapshot's sandboxes run on its runtime. */
    runtime?: string;
    network?: NetworkPolicy;
    /** ports whose URLs need no token (0: every port) */
    publicPorts?: number[];
    /** seconds the create may wait, parked, for a node with room when a cluster's nodes are full (first come, first placed); 0 = answer resource_exhausted at once. Default 0. */
    capacityWait?: number;
}
export interface SandboxInfo {
    id: string;
    name?: string;
    image: string;
    state: "pending" | "starting" | "running" | "suspending" | "suspended" | "resuming" | "stopping" | "terminated" | "failed";
    reason?: string;
    runtime: string;
    node: string;
    cpus: number;
    memoryMB: number;
    diskMB: number;
    metadata?: Record<string, string>;
    timeout: number;
    /** set when timeout is. */
    timeoutAction?: "kill" | "suspend";
    idleTimeout?: number;
    /** set when idle_timeout is. */
    idleAction?: "kill" | "suspend";
    createdAt: Date;
    startedAt?: Date;
    /** while a timeout runs (never while suspended) */
    expiresAt?: Date;
    /** running with an idle timeout: the last activity. */
    lastActiveAt?: Date;
    /** running with an idle timeout: when idle_action applies. */
    idleExpiresAt?: Date;
    /** while suspended. */
    suspendedAt?: Date;
    /** while suspended with a timeout: seconds of running life left. */
    timeoutLeft?: number;
    /** while suspended: size of the saved state. */
    snapshotBytes?: number;
    /** the snapshot the sandbox was created from. */
    fromSnapshot?: string;
    network?: NetworkPolicy;
    /** ports whose URLs need no token (0: every port) */
    publicPorts?: number[];
}
export interface CreatePoolRequest {
    name?: string;
    /** image of the spares (exclusive with snapshot) */
    image?: string;
    /** snapshot ID or name the spares start from; cpus, memory_mb, disk_mb and user are its and must be unset. */
    snapshot?: string;
    size: number;
    cpus?: number;
    memoryMB?: number;
    diskMB?: number;
    user?: string;
    /** runtime of the spares (gvisor, qemu); default the node's; a snapshot pool runs on its snapshot's. */
    runtime?: string;
}
export interface Pool {
    id: string;
    name?: string;
    image?: string;
    snapshot?: string;
    size: number;
    /** spares ready to be claimed now. */
    ready: number;
    /** why the pool is not full and cannot fill now (a failed boot, host memory, a missing image) */
    waiting?: string;
    cpus: number;
    memoryMB: number;
    diskMB: number;
    user?: string;
    /** runtime the spares run on. */
    runtime?: string;
    createdAt: Date;
}
export interface PoolList {
    pools: Pool[];
}
export interface AddSSHKeyRequest {
    /** unique among the tenant's keys; default the key's comment, else key-XXXXXXXX. */
    name?: string;
    /** one authorized_keys line, e.g. the contents of ~/.ssh/id_ed25519.pub. */
    publicKey: string;
}
export interface SSHKey {
    id: string;
    name: string;
    /** one authorized_keys line. */
    publicKey: string;
    /** SHA256 fingerprint as ssh-keygen -l prints it (SHA256:...) */
    fingerprint: string;
    createdAt: Date;
}
export interface SSHKeyList {
    sshKeys: SSHKey[];
}
export interface CreateSnapshotRequest {
    /** ID or name of a running sandbox. */
    sandbox: string;
    /** unique among the tenant's snapshots. */
    name?: string;
    /** memory: memory, processes and files; filesystem: the root filesystem's changes only. Default "memory". */
    mode?: "memory" | "filesystem";
}
export interface Snapshot {
    id: string;
    name?: string;
    /** ID of the source sandbox (which may be gone) */
    sandbox: string;
    image?: string;
    mode: "memory" | "filesystem";
    /** mode filesystem: ID of the node-local image holding the snapshot (image plus one layer); removing it breaks the snapshot. */
    filesystemImage?: string;
    cpus?: number;
    memoryMB?: number;
    diskMB?: number;
    /** size of the saved files; mode filesystem: of the compressed layer. */
    sizeBytes: number;
    node?: string;
    createdAt: Date;
}
export interface SnapshotList {
    snapshots: Snapshot[];
}
export interface ForkRequest {
    /** Default 1. */
    count?: number;
    /** keep the checkpoint as a snapshot of this name. */
    snapshotName?: string;
}
export interface ForkResponse {
    sandboxes: SandboxInfo[];
    /** ID of the kept snapshot, when snapshot_name was set. */
    snapshot?: string;
}
export interface SandboxList {
    sandboxes: SandboxInfo[];
    nextPageToken?: string;
}
export interface SetTimeoutRequest {
    timeout: number;
}
export interface Image {
    name: string;
    /** sha256: digest of the image config. */
    id: string;
    /** unpacked size of the layers in bytes. */
    size: number;
    createdAt: Date;
    /** manifest digest; absent for an image that never met a registry. */
    digest?: string;
}
export interface ImageList {
    images?: Image[];
}
export interface ImageDetails extends Image {
    /** bottom first. */
    layers: ImageLayer[];
    config: ImageConfig;
    history?: ImageHistory[];
}
export interface ImageLayer {
    /** digest of the uncompressed layer tar. */
    diffId: string;
    /** digest of the layer blob (usually gzip) */
    digest?: string;
    /** size of the blob; 0 when the store has none. */
    size: number;
    mediaType?: string;
    unpackedSize: number;
}
export interface ImageConfig {
    env?: string[];
    workingDir?: string;
    user?: string;
    entrypoint?: string[];
    cmd?: string[];
    /** port/proto, e.g. 8080/tcp. */
    exposedPorts?: string[];
    labels?: Record<string, string>;
    shell?: string[];
    stopSignal?: string;
}
export interface ImageHistory {
    created?: Date;
    createdBy?: string;
    comment?: string;
    emptyLayer?: boolean;
}
export interface TagImageRequest {
    name: string;
}
export interface PullImageRequest {
    /** e.g. docker.io/library/alpine:3.20. */
    ref: string;
    /** allow plain HTTP to the registry. */
    insecure?: boolean;
    username?: string;
    password?: string;
    /** os/arch[/variant]; default the server's. */
    platform?: string;
}
export interface PushImageRequest {
    /** stored image name or ID. */
    image: string;
    /** registry reference to push to. */
    dest: string;
    insecure?: boolean;
    username?: string;
    password?: string;
}
export interface PruneImagesResult {
    layers: number;
    blobs: number;
    bytes: number;
}
export interface ImageProgress {
    phase: "resolving" | "downloading" | "unpacking" | "uploading" | "exists";
    current: number;
    /** 0 when unknown. */
    total: number;
    /** the layer digest. */
    detail?: string;
}
export interface BuildResult {
    imageId: string;
    tags: string[];
    steps: number;
    cachedSteps: number;
    runSteps: number;
    durationMs: number;
}
/** One line of a pull, push or build stream; exactly one property is set. */
export interface ImageEvent {
    progress?: ImageProgress;
    /** one line of build output. */
    log?: string;
    image?: Image;
    digest?: string;
    result?: BuildResult;
    error?: ErrorBody;
}
export interface ServerInfo {
    version?: string;
    /** runtime names a create may ask for, the default first. */
    runtimes?: string[];
    runtimeDetails?: RuntimeInfo[];
    node?: string;
}
export interface PortAccessRequest {
    public: boolean;
}
/** 0 is no limit. */
export interface Quota {
    sandboxes?: number;
    vcpus?: number;
    memoryMB?: number;
    snapshots?: number;
}
/** A token bucket over all the tenant's keys; per_second 0 is no limit. */
export interface RateLimit {
    perSecond?: number;
    burst?: number;
}
export interface Tenant {
    name?: string;
    quota?: Quota;
    rateLimit?: RateLimit;
    placement?: Placement;
    usage?: Quota;
    createdAt?: Date;
}
/** Where a tenant's sandboxes run in a cluster. node_pools are its dedicated node pools, tried in order (their nodes run no other tenant's sandboxes; a pool has one owner, 409 otherwise); with overflow_to_shared the shared nodes are tried when none has room. No node_pools means the shared nodes. */
export interface Placement {
    nodePools?: string[];
    overflowToShared?: boolean;
}
export interface CreateTenantRequest {
    name: string;
    quota?: Quota;
    rateLimit?: RateLimit;
    placement?: Placement;
}
export interface UpdateTenantRequest {
    quota?: Quota;
    rateLimit?: RateLimit;
    placement?: Placement;
}
export interface APIKey {
    id?: string;
    name?: string;
    tenant?: string;
    admin?: boolean;
    createdAt?: Date;
    /** The key of this request. */
    current?: boolean;
}
export interface CreateAPIKeyRequest {
    name?: string;
    tenant?: string;
    admin?: boolean;
    format?: "den" | "e2b";
}
export interface CreateAPIKeyResponse {
    key?: APIKey;
    secret?: string;
}
/** egress policy: den's range, the host, link-local, loopback, private and reserved ranges are refused unless a CIDR rule allows them; then allow rules accept, deny rules drop, and the rest follows internet; names are checked by den's DNS resolver. */
export interface NetworkPolicy {
    /** Default true. */
    internet?: boolean;
    /** IPv4 address or CIDR, domain, or *.domain. */
    allow?: string[];
    /** IPv4 address or CIDR, domain, or *.domain. */
    deny?: string[];
}
export interface NodeInfo {
    id: string;
    state: "ready" | "down" | "draining";
    /** the default first. */
    runtimes: RuntimeInfo[];
    cpus: number;
    memoryMB: number;
    memoryAvailableMB: number;
    /** sandboxes running on the node. */
    sandboxes: number;
    version: string;
    cluster?: NodeDetail;
}
/** a cluster node's record (absent for den up's local node) */
export interface NodeDetail {
    name?: string;
    pool?: string;
    labels?: Record<string, string>;
    /** capacity in CPUs, unrounded. */
    cpus?: number;
    diskMB?: number;
    draining?: boolean;
    /** the server the node is, or was last, connected to. */
    server?: string;
    registeredAt?: Date;
    updatedAt?: Date;
}
export interface CreateJoinTokenRequest {
    /** how long the token admits nodes; absent: 3600, 0: forever. */
    ttlSec?: number;
    /** Default 1. */
    uses?: number;
    pool?: string;
    labels?: Record<string, string>;
    /** "" admits agents (den agent --token); server admits servers joining the raft cluster (den server --join ... --token), which then read the cluster CA from the replicated state. A server token takes no pool or labels. */
    role?: "" | "server";
}
export interface JoinToken {
    id: string;
    uses: number;
    used: number;
    pool?: string;
    labels?: Record<string, string>;
    /** server for a server token; absent for an agent token. */
    role?: string;
    expiresAt?: Date;
    createdAt: Date;
    /** the secret form for den agent --token (or den server --token); in the answer to the creation only. */
    token?: string;
}
export interface JoinTokenList {
    tokens: JoinToken[];
}
export interface NodeList {
    nodes: NodeInfo[];
}
export interface ClusterMember {
    id: string;
    /** cluster address (host:port); the ID for den up. */
    address: string;
    role: "leader" | "follower";
    voter: boolean;
    /** milliseconds since the answering server last heard from this one over raft (0 for itself); absent when never since it started. */
    lastContactMs?: number;
}
export interface ClusterMemberList {
    /** ID of the server that answered. */
    server: string;
    members: ClusterMember[];
}
export interface ClusterCA {
    phase: "stable" | "trust" | "sign";
    /** rotation steps ever taken. */
    generation: number;
    signer: CACert;
    next?: CACert;
    previous?: CACert;
    rotationStartedAt?: Date;
    rotatedAt?: Date;
    /** servers that have not taken the current step. */
    waitingServers: string[];
    /** nodes up that have not taken the current step. */
    waitingNodes: string[];
}
export interface CACert {
    hash: string;
    expiresAt: Date;
}
export interface RotateClusterCARequest {
    /** Default "begin". */
    action?: "begin" | "abort";
}
export interface RuntimeInfo {
    name?: string;
    isolation?: "user-space-kernel" | "vm" | "none";
    /** kvm, or tcg (software emulation) for a VM runtime. */
    accel?: string;
    default?: boolean;
    suspend?: boolean;
    pool?: boolean;
}
export interface SnapshotUsageResult {
    node: string;
    sandboxes: {
        id: string;
        name?: string;
        state: string;
        /** the generation a resume restores; prune never removes it. */
        pinnedGeneration?: number;
        /** sealed generations on disk. */
        generations: number;
        /** unsealed generations on disk. */
        pending: number;
        bytes: number;
        files: number;
    }[];
    objects: {
        id: string;
        name?: string;
        bytes: number;
        files: number;
        createdAt: Date;
    }[];
    tenantBytes: number;
    nodeBytes: number;
    nodeFiles: number;
    /** what no record names. */
    orphanBytes: number;
    /** keys: generation, pending, object, object-pending, other. */
    byKind: Record<string, {
        dirs?: number;
        bytes?: number;
        files?: number;
    }>;
}
export interface PruneSnapshotsRequest {
    /** report what would be removed; remove nothing. */
    dryRun?: boolean;
    /** also delete the tenant's snapshot objects older than older_than_sec. */
    objects?: boolean;
    /** required with objects; 0 is every one. */
    olderThanSec?: number;
    /** with objects: named snapshot objects too. */
    includeNamed?: boolean;
}
export interface PruneSnapshotsResult {
    dryRun: boolean;
    /** freed, or to be freed. */
    bytes: number;
    removed: {
        kind: "generation" | "pending" | "object" | "object-pending" | "other";
        sandbox?: string;
        snapshot?: string;
        generation?: number;
        bytes: number;
        files: number;
        reason: string;
    }[];
}
export interface ResizePoolRequest {
    size: number;
}
