import { type ConfigOptions } from './config.js';
import { Images } from './images.js';
import { Sandbox, Sandboxes } from './sandbox.js';
import { Transport, type CallOptions } from './transport.js';
import type { APIKey, AddSSHKeyRequest, ClusterCA, ClusterMemberList, CreateAPIKeyRequest, CreateAPIKeyResponse, CreateJoinTokenRequest, CreatePoolRequest, CreateSnapshotRequest, CreateTenantRequest, JoinToken, NodeInfo, Pool, PruneSnapshotsRequest, PruneSnapshotsResult, ServerInfo, Snapshot, SnapshotUsageResult, SSHKey, Tenant, UpdateTenantRequest } from './types.gen.js';
/** Options of a Client; unset ones come from DEN_URL, DEN_API_KEY and den up's env file. */
export interface ClientOptions extends ConfigOptions {
    /** Retries of a request answered 429 or 503, with backoff; default 3. */
    maxRetries?: number;
    /** The fetch to use; default Node's. */
    fetch?: typeof fetch;
}
/**
 * Client is a client of one den server. It holds no connection state of
 * its own (Node's fetch pools connections) and is safe to share.
 */
export declare class Client {
    /** The server's base URL. */
    readonly url: string;
    /** The sandbox traffic listener, where port URLs point; "" when unknown. */
    readonly sandboxUrl: string;
    /** @internal */
    readonly transport: Transport;
    /** Sandboxes: create, get, list, delete, timeouts, suspend and resume, fork, network, ports. */
    readonly sandboxes: Sandboxes;
    /** Images: list, inspect, tag, remove, prune, import, export, pull, push, build. */
    readonly images: Images;
    /** Snapshots of sandboxes. */
    readonly snapshots: Snapshots;
    /** Warm pools of ready sandboxes. */
    readonly pools: Pools;
    /** SSH public keys for den's SSH gateway. */
    readonly sshKeys: SSHKeys;
    /** Tenants, their quotas and rate limits (admin keys). */
    readonly tenants: Tenants;
    /** API keys. */
    readonly apiKeys: APIKeys;
    /** Join tokens for nodes and servers (admin keys). */
    readonly tokens: JoinTokens;
    /** The nodes that run sandboxes. */
    readonly nodes: Nodes;
    /** The den servers of a cluster. */
    readonly cluster: Cluster;
    /** new Client() reads DEN_URL and DEN_API_KEY, else den up's env file; options override both. */
    constructor(opts?: ClientOptions);
    /** info describes the server: version, runtimes and node. */
    info(opts?: CallOptions): Promise<ServerInfo>;
    /** sandbox returns a handle on the sandbox id without asking the server (info is undefined). */
    sandbox(id: string, opts?: {
        user?: string;
    }): Sandbox;
}
/** Snapshots: saved sandboxes that new sandboxes start from (client.snapshots). */
export declare class Snapshots {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** create saves a running sandbox as a snapshot; it keeps running. */
    create(req: CreateSnapshotRequest, opts?: CallOptions): Promise<Snapshot>;
    /** get returns the snapshot with the given ID or name. */
    get(idOrName: string, opts?: CallOptions): Promise<Snapshot>;
    /** list returns the tenant's snapshots, oldest first. */
    list(opts?: CallOptions): Promise<Snapshot[]>;
    /** delete deletes a snapshot; sandboxes started from it go on. */
    delete(idOrName: string, opts?: CallOptions): Promise<void>;
    /** usage reports the disk the tenant's snapshots take on the node, and the node's totals. */
    usage(opts?: CallOptions): Promise<SnapshotUsageResult>;
    /** prune removes snapshot files nothing references (and, when asked, old snapshot objects). */
    prune(req?: PruneSnapshotsRequest, opts?: CallOptions): Promise<PruneSnapshotsResult>;
}
/** Pools: warm pools of started, never-used sandboxes (client.pools). */
export declare class Pools {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** create declares a pool; it fills in the background. */
    create(req: CreatePoolRequest, opts?: CallOptions): Promise<Pool>;
    /** get returns the pool with the given ID or name, with its ready count. */
    get(idOrName: string, opts?: CallOptions): Promise<Pool>;
    /** list returns the tenant's pools, oldest first. */
    list(opts?: CallOptions): Promise<Pool[]>;
    /** resize sets the number of spares a pool keeps ready. */
    resize(idOrName: string, size: number, opts?: CallOptions): Promise<Pool>;
    /** delete deletes a pool and its spares; sandboxes claimed from it go on. */
    delete(idOrName: string, opts?: CallOptions): Promise<void>;
}
/** SSHKeys: public keys that may log in to the tenant's sandboxes through den's SSH gateway (client.sshKeys). */
export declare class SSHKeys {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** add registers a public key (one authorized_keys line). */
    add(req: AddSSHKeyRequest, opts?: CallOptions): Promise<SSHKey>;
    /** list returns the tenant's keys, oldest first. */
    list(opts?: CallOptions): Promise<SSHKey[]>;
    /** delete removes a key by ID or name. */
    delete(idOrName: string, opts?: CallOptions): Promise<void>;
}
/** Tenants, with quotas, rate limits and usage (client.tenants). */
export declare class Tenants {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** create creates a tenant (admin keys). */
    create(req: CreateTenantRequest, opts?: CallOptions): Promise<Tenant>;
    /** get returns a tenant with its quota, rate limit and usage. */
    get(name: string, opts?: CallOptions): Promise<Tenant>;
    /** list returns every tenant (admin keys) or the key's own. */
    list(opts?: CallOptions): Promise<Tenant[]>;
    /** update replaces a tenant's quota, rate limit or placement (admin keys). */
    update(name: string, req: UpdateTenantRequest, opts?: CallOptions): Promise<Tenant>;
    /** delete deletes a tenant that holds nothing, with its keys (admin keys). */
    delete(name: string, opts?: CallOptions): Promise<void>;
}
/** APIKeys: the keys of tenants (client.apiKeys). */
export declare class APIKeys {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** create makes a key; the answer's secret is shown this once. */
    create(req?: CreateAPIKeyRequest, opts?: CallOptions): Promise<CreateAPIKeyResponse>;
    /** list lists the keys of tenant (default the key's own), never their secrets. */
    list(opts?: CallOptions & {
        tenant?: string;
    }): Promise<APIKey[]>;
    /** revoke deletes a key by ID (or unique name); it stops working at once. */
    revoke(idOrName: string, opts?: CallOptions): Promise<void>;
}
/** JoinTokens: tokens that admit den agents and servers to a cluster (client.tokens; admin keys). */
export declare class JoinTokens {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** create makes a join token; its token field is the secret form, shown this once. */
    create(req?: CreateJoinTokenRequest, opts?: CallOptions): Promise<JoinToken>;
    /** list lists the join tokens, without their secrets. */
    list(opts?: CallOptions): Promise<JoinToken[]>;
    /** delete deletes a join token; the nodes it admitted stay. */
    delete(id: string, opts?: CallOptions): Promise<void>;
}
/** Nodes: the machines that run sandboxes (client.nodes). */
export declare class Nodes {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** list lists the nodes. */
    list(opts?: CallOptions): Promise<NodeInfo[]>;
    /** get describes a node. */
    get(id: string, opts?: CallOptions): Promise<NodeInfo>;
    /** drain marks a cluster node draining: no new sandboxes (admin keys; ConflictError on den up). */
    drain(id: string, opts?: CallOptions): Promise<NodeInfo>;
    /** undrain clears a node's draining mark (admin keys). */
    undrain(id: string, opts?: CallOptions): Promise<NodeInfo>;
}
/** Cluster: the den servers of the raft cluster (client.cluster; admin keys). */
export declare class Cluster {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** members lists the servers as the answering server sees them. */
    members(opts?: CallOptions): Promise<ClusterMemberList>;
    /** ca shows the cluster CA and where a rotation of it stands (den server only). */
    ca(opts?: CallOptions): Promise<ClusterCA>;
    /**
     * rotateCA begins a rotation of the cluster CA; the leader takes its steps
     * in the background (see ca()). With `{ abort: true }` it drops a rotation
     * whose new CA does not sign yet.
     */
    rotateCA(req?: {
        abort?: boolean;
    }, opts?: CallOptions): Promise<ClusterCA>;
}
