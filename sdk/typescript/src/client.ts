// Client is a client of one den server: the API's groups of routes as
// properties (sandboxes, images, snapshots, pools, sshKeys, tenants,
// apiKeys, tokens, nodes, cluster) and info().
import { resolveConfig, type ConfigOptions } from './config.js'
import { Images } from './images.js'
import { Sandbox, Sandboxes } from './sandbox.js'
import { Transport, seg, type CallOptions } from './transport.js'
import type {
  APIKey,
  AddSSHKeyRequest,
  ClusterCA,
  ClusterMemberList,
  CreateAPIKeyRequest,
  CreateAPIKeyResponse,
  CreateJoinTokenRequest,
  CreatePoolRequest,
  CreateSnapshotRequest,
  CreateTenantRequest,
  JoinToken,
  JoinTokenList,
  NodeInfo,
  NodeList,
  Pool,
  PoolList,
  PruneSnapshotsRequest,
  PruneSnapshotsResult,
  ServerInfo,
  Snapshot,
  SnapshotList,
  SnapshotUsageResult,
  SSHKey,
  SSHKeyList,
  Tenant,
  UpdateTenantRequest,
} from './types.gen.js'

/** Options of a Client; unset ones come from DEN_URL, DEN_API_KEY and den up's env file. */
export interface ClientOptions extends ConfigOptions {
  /** Retries of a request answered 429 or 503, with backoff; default 3. */
  maxRetries?: number
  /** The fetch to use; default Node's. */
  fetch?: typeof fetch
}

/**
 * Client is a client of one den server. It holds no connection state of
 * its own (Node's fetch pools connections) and is safe to share.
 */
export class Client {
  /** The server's base URL. */
  readonly url: string
  /** The sandbox traffic listener, where port URLs point; "" when unknown. */
  readonly sandboxUrl: string
  /** @internal */
  readonly transport: Transport
  /** Sandboxes: create, get, list, delete, timeouts, suspend and resume, fork, network, ports. */
  readonly sandboxes: Sandboxes
  /** Images: list, inspect, tag, remove, prune, import, export, pull, push, build. */
  readonly images: Images
  /** Snapshots of sandboxes. */
  readonly snapshots: Snapshots
  /** Warm pools of ready sandboxes. */
  readonly pools: Pools
  /** SSH public keys for den's SSH gateway. */
  readonly sshKeys: SSHKeys
  /** Tenants, their quotas and rate limits (admin keys). */
  readonly tenants: Tenants
  /** API keys. */
  readonly apiKeys: APIKeys
  /** Join tokens for nodes and servers (admin keys). */
  readonly tokens: JoinTokens
  /** The nodes that run sandboxes. */
  readonly nodes: Nodes
  /** The den servers of a cluster. */
  readonly cluster: Cluster

  /** new Client() reads DEN_URL and DEN_API_KEY, else den up's env file; options override both. */
  constructor(opts: ClientOptions = {}) {
    const cfg = resolveConfig(opts)
    this.url = cfg.url
    this.sandboxUrl = cfg.sandboxUrl
    const t: ConstructorParameters<typeof Transport>[0] = { url: cfg.url, apiKey: cfg.apiKey }
    if (opts.maxRetries !== undefined) t.maxRetries = opts.maxRetries
    if (opts.fetch) t.fetch = opts.fetch
    this.transport = new Transport(t)
    this.sandboxes = new Sandboxes(this)
    this.images = new Images(this.transport)
    this.snapshots = new Snapshots(this.transport)
    this.pools = new Pools(this.transport)
    this.sshKeys = new SSHKeys(this.transport)
    this.tenants = new Tenants(this.transport)
    this.apiKeys = new APIKeys(this.transport)
    this.tokens = new JoinTokens(this.transport)
    this.nodes = new Nodes(this.transport)
    this.cluster = new Cluster(this.transport)
  }

  /** info describes the server: version, runtimes and node. */
  async info(opts: CallOptions = {}): Promise<ServerInfo> {
    return this.transport.json<ServerInfo>('GET', '/v1/info', undefined, opts)
  }

  /** sandbox returns a handle on the sandbox id without asking the server (info is undefined). */
  sandbox(id: string, opts: { user?: string } = {}): Sandbox {
    return new Sandbox(this, id, undefined, opts.user)
  }
}

/** Snapshots: saved sandboxes that new sandboxes start from (client.snapshots). */
export class Snapshots {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** create saves a running sandbox as a snapshot; it keeps running. */
  async create(req: CreateSnapshotRequest, opts: CallOptions = {}): Promise<Snapshot> {
    return this.t.json<Snapshot>('POST', '/v1/snapshots', req, opts)
  }

  /** get returns the snapshot with the given ID or name. */
  async get(idOrName: string, opts: CallOptions = {}): Promise<Snapshot> {
    return this.t.json<Snapshot>('GET', `/v1/snapshots/${seg(idOrName)}`, undefined, opts)
  }

  /** list returns the tenant's snapshots, oldest first. */
  async list(opts: CallOptions = {}): Promise<Snapshot[]> {
    return (await this.t.json<SnapshotList>('GET', '/v1/snapshots', undefined, opts)).snapshots
  }

  /** delete deletes a snapshot; sandboxes started from it go on. */
  async delete(idOrName: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/snapshots/${seg(idOrName)}`, undefined, opts)
  }

  /** usage reports the disk the tenant's snapshots take on the node, and the node's totals. */
  async usage(opts: CallOptions = {}): Promise<SnapshotUsageResult> {
    return this.t.json<SnapshotUsageResult>('GET', '/v1/snapshots/usage', undefined, opts)
  }

  /** prune removes snapshot files nothing references (and, when asked, old snapshot objects). */
  async prune(req: PruneSnapshotsRequest = {}, opts: CallOptions = {}): Promise<PruneSnapshotsResult> {
    return this.t.json<PruneSnapshotsResult>('POST', '/v1/snapshots/prune', req, opts)
  }
}

/** Pools: warm pools of started, never-used sandboxes (client.pools). */
export class Pools {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** create declares a pool; it fills in the background. */
  async create(req: CreatePoolRequest, opts: CallOptions = {}): Promise<Pool> {
    return this.t.json<Pool>('POST', '/v1/pools', req, opts)
  }

  /** get returns the pool with the given ID or name, with its ready count. */
  async get(idOrName: string, opts: CallOptions = {}): Promise<Pool> {
    return this.t.json<Pool>('GET', `/v1/pools/${seg(idOrName)}`, undefined, opts)
  }

  /** list returns the tenant's pools, oldest first. */
  async list(opts: CallOptions = {}): Promise<Pool[]> {
    return (await this.t.json<PoolList>('GET', '/v1/pools', undefined, opts)).pools
  }

  /** resize sets the number of spares a pool keeps ready. */
  async resize(idOrName: string, size: number, opts: CallOptions = {}): Promise<Pool> {
    return this.t.json<Pool>('PATCH', `/v1/pools/${seg(idOrName)}`, { size }, opts)
  }

  /** delete deletes a pool and its spares; sandboxes claimed from it go on. */
  async delete(idOrName: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/pools/${seg(idOrName)}`, undefined, opts)
  }
}

/** SSHKeys: public keys that may log in to the tenant's sandboxes through den's SSH gateway (client.sshKeys). */
export class SSHKeys {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** add registers a public key (one authorized_keys line). */
  async add(req: AddSSHKeyRequest, opts: CallOptions = {}): Promise<SSHKey> {
    return this.t.json<SSHKey>('POST', '/v1/ssh-keys', req, opts)
  }

  /** list returns the tenant's keys, oldest first. */
  async list(opts: CallOptions = {}): Promise<SSHKey[]> {
    return (await this.t.json<SSHKeyList>('GET', '/v1/ssh-keys', undefined, opts)).sshKeys
  }

  /** delete removes a key by ID or name. */
  async delete(idOrName: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/ssh-keys/${seg(idOrName)}`, undefined, opts)
  }
}

/** Tenants, with quotas, rate limits and usage (client.tenants). */
export class Tenants {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** create creates a tenant (admin keys). */
  async create(req: CreateTenantRequest, opts: CallOptions = {}): Promise<Tenant> {
    return this.t.json<Tenant>('POST', '/v1/tenants', req, opts)
  }

  /** get returns a tenant with its quota, rate limit and usage. */
  async get(name: string, opts: CallOptions = {}): Promise<Tenant> {
    return this.t.json<Tenant>('GET', `/v1/tenants/${seg(name)}`, undefined, opts)
  }

  /** list returns every tenant (admin keys) or the key's own. */
  async list(opts: CallOptions = {}): Promise<Tenant[]> {
    return this.t.json<Tenant[]>('GET', '/v1/tenants', undefined, opts)
  }

  /** update replaces a tenant's quota, rate limit or placement (admin keys). */
  async update(name: string, req: UpdateTenantRequest, opts: CallOptions = {}): Promise<Tenant> {
    return this.t.json<Tenant>('PATCH', `/v1/tenants/${seg(name)}`, req, opts)
  }

  /** delete deletes a tenant that holds nothing, with its keys (admin keys). */
  async delete(name: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/tenants/${seg(name)}`, undefined, opts)
  }
}

/** APIKeys: the keys of tenants (client.apiKeys). */
export class APIKeys {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** create makes a key; the answer's secret is shown this once. */
  async create(req: CreateAPIKeyRequest = {}, opts: CallOptions = {}): Promise<CreateAPIKeyResponse> {
    return this.t.json<CreateAPIKeyResponse>('POST', '/v1/keys', req, opts)
  }

  /** list lists the keys of tenant (default the key's own), never their secrets. */
  async list(opts: CallOptions & { tenant?: string } = {}): Promise<APIKey[]> {
    return this.t.json<APIKey[]>('GET', '/v1/keys', undefined, { query: { tenant: opts.tenant || undefined }, signal: opts.signal })
  }

  /** revoke deletes a key by ID (or unique name); it stops working at once. */
  async revoke(idOrName: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/keys/${seg(idOrName)}`, undefined, opts)
  }
}

/** JoinTokens: tokens that admit den agents and servers to a cluster (client.tokens; admin keys). */
export class JoinTokens {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** create makes a join token; its token field is the secret form, shown this once. */
  async create(req: CreateJoinTokenRequest = {}, opts: CallOptions = {}): Promise<JoinToken> {
    return this.t.json<JoinToken>('POST', '/v1/tokens', req, opts)
  }

  /** list lists the join tokens, without their secrets. */
  async list(opts: CallOptions = {}): Promise<JoinToken[]> {
    return (await this.t.json<JoinTokenList>('GET', '/v1/tokens', undefined, opts)).tokens
  }

  /** delete deletes a join token; the nodes it admitted stay. */
  async delete(id: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/tokens/${seg(id)}`, undefined, opts)
  }
}

/** Nodes: the machines that run sandboxes (client.nodes). */
export class Nodes {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** list lists the nodes. */
  async list(opts: CallOptions = {}): Promise<NodeInfo[]> {
    return (await this.t.json<NodeList>('GET', '/v1/nodes', undefined, opts)).nodes
  }

  /** get describes a node. */
  async get(id: string, opts: CallOptions = {}): Promise<NodeInfo> {
    return this.t.json<NodeInfo>('GET', `/v1/nodes/${seg(id)}`, undefined, opts)
  }

  /** drain marks a cluster node draining: no new sandboxes (admin keys; ConflictError on den up). */
  async drain(id: string, opts: CallOptions = {}): Promise<NodeInfo> {
    return this.t.json<NodeInfo>('POST', `/v1/nodes/${seg(id)}/drain`, undefined, opts)
  }

  /** undrain clears a node's draining mark (admin keys). */
  async undrain(id: string, opts: CallOptions = {}): Promise<NodeInfo> {
    return this.t.json<NodeInfo>('POST', `/v1/nodes/${seg(id)}/undrain`, undefined, opts)
  }
}

/** Cluster: the den servers of the raft cluster (client.cluster; admin keys). */
export class Cluster {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** members lists the servers as the answering server sees them. */
  async members(opts: CallOptions = {}): Promise<ClusterMemberList> {
    return this.t.json<ClusterMemberList>('GET', '/v1/cluster/members', undefined, opts)
  }

  /** ca shows the cluster CA and where a rotation of it stands (den server only). */
  async ca(opts: CallOptions = {}): Promise<ClusterCA> {
    return this.t.json<ClusterCA>('GET', '/v1/cluster/ca', undefined, opts)
  }

  /**
   * rotateCA begins a rotation of the cluster CA; the leader takes its steps
   * in the background (see ca()). With `{ abort: true }` it drops a rotation
   * whose new CA does not sign yet.
   */
  async rotateCA(req: { abort?: boolean } = {}, opts: CallOptions = {}): Promise<ClusterCA> {
    return this.t.json<ClusterCA>('POST', '/v1/cluster/ca/rotate', { action: req.abort ? 'abort' : 'begin' }, opts)
  }
}
