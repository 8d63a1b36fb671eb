// Sandboxes: the Sandbox handle (commands, files, terminals, lifecycle) and
// client.sandboxes, the sandbox routes of the API.
import { Client, type ClientOptions } from './client.js'
import { Commands, Pty } from './commands.js'
import { basicUser, type GuestTarget } from './connect.js'
import { NotFoundError } from './errors.js'
import { Files } from './files.js'
import { portUrl, type PortURL, type PortURLOptions } from './ports.js'
import { seg, type CallOptions } from './transport.js'
import type { CreateSandboxRequest, CreateSnapshotRequest, ForkRequest, ForkResponse, NetworkPolicy, SandboxInfo, SandboxList, Snapshot } from './types.gen.js'

/** Options of Sandbox.create: the sandbox's settings, and the client to use (or its settings). */
export interface SandboxCreateOptions extends CreateSandboxRequest, CallOptions, ClientOptions {
  /** The client to create the sandbox with; default a new Client from the other options and the environment. */
  client?: Client
}

/** Filters and paging of a sandbox listing. */
export interface ListSandboxesOptions extends CallOptions {
  /** Only sandboxes in these states. */
  state?: SandboxInfo['state'] | readonly SandboxInfo['state'][]
  /** Only sandboxes whose metadata has all these pairs. */
  metadata?: Record<string, string>
  /** Page size (1 to 1000); default the server's (100). */
  limit?: number
  /** Continue from a page's nextPageToken. */
  pageToken?: string
}

/** The copies a fork made, and the kept snapshot's ID when snapshotName was set. */
export interface ForkResult {
  sandboxes: Sandbox[]
  snapshot?: string
}

const clientKeys = ['client', 'url', 'apiKey', 'sandboxUrl', 'dataDir', 'maxRetries', 'fetch', 'signal'] as const

/**
 * Sandbox is a handle on one sandbox: its last known state (info) and the
 * operations inside it (commands, files, pty), which go through the
 * server's proxy to the sandbox's guest agent, acting as user when set.
 */
export class Sandbox {
  /** The sandbox's ID. */
  readonly id: string
  /** The client the handle talks through. */
  readonly client: Client
  /** The user of the sandbox that commands and files act as; undefined: the sandbox's default. */
  readonly user: string | undefined
  /** The sandbox as the API last showed it; undefined for a handle made without asking (client.sandbox). */
  info: SandboxInfo | undefined
  /** Run and manage processes. */
  readonly commands: Commands
  /** Read and write files. */
  readonly files: Files
  /** Processes on pseudo-terminals. */
  readonly pty: Pty

  /** @internal Use Sandbox.create, Sandbox.connect, client.sandboxes.get or client.sandbox. */
  constructor(client: Client, id: string, info?: SandboxInfo, user?: string) {
    this.client = client
    this.id = id
    this.info = info
    this.user = user || undefined
    const guest = (u?: string): GuestTarget => ({
      transport: client.transport,
      base: `${client.url}/v1/sandboxes/${seg(id)}/envd`,
      headers: (u || this.user) ? { Authorization: basicUser((u || this.user)!) } : {},
    })
    this.commands = new Commands(guest)
    this.files = new Files(guest, this.commands)
    this.pty = new Pty(this.commands, guest)
  }

  /** create creates a sandbox and returns its handle once the server answers (running). */
  static async create(opts: SandboxCreateOptions = {}): Promise<Sandbox> {
    const client = opts.client ?? new Client(opts)
    const req: Record<string, unknown> = { ...opts }
    for (const k of clientKeys) delete req[k]
    return client.sandboxes.create(req as CreateSandboxRequest, opts.signal ? { signal: opts.signal } : {})
  }

  /** connect returns a handle on the existing sandbox idOrName (it resumes on first use when suspended). */
  static async connect(idOrName: string, opts: ClientOptions & CallOptions & { client?: Client } = {}): Promise<Sandbox> {
    const client = opts.client ?? new Client(opts)
    return client.sandboxes.get(idOrName, opts.signal ? { signal: opts.signal } : {})
  }

  /** asUser returns a handle whose commands and files act as user; this one is unchanged. */
  asUser(user: string): Sandbox {
    return new Sandbox(this.client, this.id, this.info, user)
  }

  private update(info: SandboxInfo): SandboxInfo {
    this.info = info
    return info
  }

  /** refresh fetches the sandbox's current state (and keeps it in info). */
  async refresh(opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.update(await this.client.sandboxes.getInfo(this.id, opts))
  }

  /** kill deletes the sandbox; false when it was already gone. */
  async kill(opts: CallOptions = {}): Promise<boolean> {
    try {
      await this.client.sandboxes.delete(this.id, opts)
      return true
    } catch (e) {
      if (e instanceof NotFoundError) return false
      throw e
    }
  }

  /** setTimeout sets the sandbox's timeout to seconds from now (0: never). */
  async setTimeout(seconds: number, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.update(await this.client.sandboxes.setTimeout(this.id, seconds, opts))
  }

  /** suspend saves the sandbox's whole state and stops it; any later call inside it resumes it. */
  async suspend(opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.update(await this.client.sandboxes.suspend(this.id, opts))
  }

  /** resume brings the suspended sandbox back, with the life it had left. */
  async resume(opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.update(await this.client.sandboxes.resume(this.id, opts))
  }

  /** snapshot saves the running sandbox as a snapshot (mode "memory", default, or "filesystem"); it keeps running. */
  async snapshot(req: Omit<CreateSnapshotRequest, 'sandbox'> = {}, opts: CallOptions = {}): Promise<Snapshot> {
    return this.client.snapshots.create({ ...req, sandbox: this.id }, opts)
  }

  /** fork checkpoints the sandbox once and starts count copies that continue from that point. */
  async fork(req: ForkRequest = {}, opts: CallOptions = {}): Promise<ForkResult> {
    return this.client.sandboxes.fork(this.id, req, opts)
  }

  /** getNetwork returns the sandbox's egress policy. */
  async getNetwork(opts: CallOptions = {}): Promise<NetworkPolicy> {
    return this.client.sandboxes.getNetwork(this.id, opts)
  }

  /** setNetwork replaces the sandbox's egress policy; it applies at once. */
  async setNetwork(policy: NetworkPolicy, opts: CallOptions = {}): Promise<NetworkPolicy> {
    return this.client.sandboxes.setNetwork(this.id, policy, opts)
  }

  /** setPortPublic makes port's URL public (no token) or private again; port 0 is every port. */
  async setPortPublic(port: number, isPublic: boolean, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.update(await this.client.sandboxes.setPort(this.id, port, isPublic, opts))
  }

  /** portUrl returns the URL of a port inside the sandbox and the headers a request to it sends. */
  async portUrl(port: number, opts: PortURLOptions = {}): Promise<PortURL> {
    return this.client.sandboxes.portUrl(this.id, port, opts)
  }

  /** Deletes the sandbox at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill()
  }
}

/** Sandboxes is the sandbox part of the API (client.sandboxes). */
export class Sandboxes {
  /** @internal */
  constructor(private readonly c: Client) {}

  private path(id: string, sub = ''): string {
    return `/v1/sandboxes/${seg(id)}${sub}`
  }

  /** create creates a sandbox; unset fields take the server's defaults. */
  async create(req: CreateSandboxRequest = {}, opts: CallOptions = {}): Promise<Sandbox> {
    const info = await this.c.transport.json<SandboxInfo>('POST', '/v1/sandboxes', req, opts)
    return new Sandbox(this.c, info.id, info)
  }

  /** get returns a handle on the sandbox with the given ID or name, with its state. */
  async get(idOrName: string, opts: CallOptions = {}): Promise<Sandbox> {
    const info = await this.getInfo(idOrName, opts)
    return new Sandbox(this.c, info.id, info)
  }

  /** getInfo returns the state of the sandbox with the given ID or name. */
  async getInfo(idOrName: string, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.c.transport.json<SandboxInfo>('GET', this.path(idOrName), undefined, opts)
  }

  /** listPage returns one page of sandboxes. */
  async listPage(opts: ListSandboxesOptions = {}): Promise<SandboxList> {
    const state = typeof opts.state === 'string' ? opts.state : opts.state?.join(',')
    const metadata = Object.entries(opts.metadata ?? {})
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
    const query = { state: state || undefined, metadata, limit: opts.limit, page_token: opts.pageToken || undefined }
    return this.c.transport.json<SandboxList>('GET', '/v1/sandboxes', undefined, { query, signal: opts.signal })
  }

  /** list yields every sandbox that matches, fetching pages as it goes. */
  async *list(opts: ListSandboxesOptions = {}): AsyncGenerator<SandboxInfo> {
    let pageToken = opts.pageToken
    do {
      const page = await this.listPage({ ...opts, ...(pageToken ? { pageToken } : {}) })
      yield* page.sandboxes ?? []
      pageToken = page.nextPageToken
    } while (pageToken)
  }

  /** delete deletes the sandbox with the given ID or name. */
  async delete(idOrName: string, opts: CallOptions = {}): Promise<void> {
    await this.c.transport.json('DELETE', this.path(idOrName), undefined, opts)
  }

  /** setTimeout sets the sandbox's timeout to seconds from now (0 removes it). */
  async setTimeout(idOrName: string, seconds: number, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.c.transport.json<SandboxInfo>('POST', this.path(idOrName, '/timeout'), { timeout: seconds }, opts)
  }

  /** suspend saves a running sandbox's state and stops it (ConflictError when not running; UnsupportedError when its runtime cannot). */
  async suspend(idOrName: string, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.c.transport.json<SandboxInfo>('POST', this.path(idOrName, '/suspend'), undefined, opts)
  }

  /** resume brings a suspended sandbox back (ConflictError when it is not suspended). */
  async resume(idOrName: string, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.c.transport.json<SandboxInfo>('POST', this.path(idOrName, '/resume'), undefined, opts)
  }

  /** fork checkpoints a running sandbox once and starts count (default 1) copies of it. */
  async fork(idOrName: string, req: ForkRequest = {}, opts: CallOptions = {}): Promise<ForkResult> {
    const res = await this.c.transport.json<ForkResponse>('POST', this.path(idOrName, '/fork'), req, opts)
    const out: ForkResult = { sandboxes: res.sandboxes.map((s) => new Sandbox(this.c, s.id, s)) }
    if (res.snapshot) out.snapshot = res.snapshot
    return out
  }

  /** getNetwork returns a sandbox's egress policy. */
  async getNetwork(idOrName: string, opts: CallOptions = {}): Promise<NetworkPolicy> {
    return this.c.transport.json<NetworkPolicy>('GET', this.path(idOrName, '/network'), undefined, opts)
  }

  /** setNetwork replaces a sandbox's egress policy (InvalidArgumentError names a bad rule). */
  async setNetwork(idOrName: string, policy: NetworkPolicy, opts: CallOptions = {}): Promise<NetworkPolicy> {
    return this.c.transport.json<NetworkPolicy>('PUT', this.path(idOrName, '/network'), policy, opts)
  }

  /** setPort makes a port's URL public or private again (port 0: every port). */
  async setPort(idOrName: string, port: number, isPublic: boolean, opts: CallOptions = {}): Promise<SandboxInfo> {
    return this.c.transport.json<SandboxInfo>('PUT', this.path(idOrName, `/ports/${seg(port)}`), { public: isPublic }, opts)
  }

  /** portUrl returns the URL of a port inside a sandbox and the headers a request to it sends. */
  async portUrl(idOrName: string, port: number, opts: PortURLOptions = {}): Promise<PortURL> {
    return portUrl(this.c.transport, this.c.sandboxUrl, idOrName, port, opts)
  }
}
