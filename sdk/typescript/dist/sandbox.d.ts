import { Client, type ClientOptions } from './client.js';
import { Commands, Pty } from './commands.js';
import { Files } from './files.js';
import { type PortURL, type PortURLOptions } from './ports.js';
import { type CallOptions } from './transport.js';
import type { CreateSandboxRequest, CreateSnapshotRequest, ForkRequest, NetworkPolicy, SandboxInfo, SandboxList, Snapshot } from './types.gen.js';
/** Options of Sandbox.create: the sandbox's settings, and the client to use (or its settings). */
export interface SandboxCreateOptions extends CreateSandboxRequest, CallOptions, ClientOptions {
    /** The client to create the sandbox with; default a new Client from the other options and the environment. */
    client?: Client;
}
/** Filters and paging of a sandbox listing. */
export interface ListSandboxesOptions extends CallOptions {
    /** Only sandboxes in these states. */
    state?: SandboxInfo['state'] | readonly SandboxInfo['state'][];
    /** Only sandboxes whose metadata has all these pairs. */
    metadata?: Record<string, string>;
    /** Page size (1 to 1000); default the server's (100). */
    limit?: number;
    /** Continue from a page's nextPageToken. */
    pageToken?: string;
}
/** The copies a fork made, and the kept snapshot's ID when snapshotName was set. */
export interface ForkResult {
    sandboxes: Sandbox[];
    snapshot?: string;
}
/**
 * Sandbox is a handle on one sandbox: its last known state (info) and the
 * operations inside it (commands, files, pty), which go through the
 * server's proxy to the sandbox's guest agent, acting as user when set.
 */
export declare class Sandbox {
    /** The sandbox's ID. */
    readonly id: string;
    /** The client the handle talks through. */
    readonly client: Client;
    /** The user of the sandbox that commands and files act as; undefined: the sandbox's default. */
    readonly user: string | undefined;
    /** The sandbox as the API last showed it; undefined for a handle made without asking (client.sandbox). */
    info: SandboxInfo | undefined;
    /** Run and manage processes. */
    readonly commands: Commands;
    /** Read and write files. */
    readonly files: Files;
    /** Processes on pseudo-terminals. */
    readonly pty: Pty;
    /** @internal Use Sandbox.create, Sandbox.connect, client.sandboxes.get or client.sandbox. */
    constructor(client: Client, id: string, info?: SandboxInfo, user?: string);
    /** create creates a sandbox and returns its handle once the server answers (running). */
    static create(opts?: SandboxCreateOptions): Promise<Sandbox>;
    /** connect returns a handle on the existing sandbox idOrName (it resumes on first use when suspended). */
    static connect(idOrName: string, opts?: ClientOptions & CallOptions & {
        client?: Client;
    }): Promise<Sandbox>;
    /** asUser returns a handle whose commands and files act as user; this one is unchanged. */
    asUser(user: string): Sandbox;
    private update;
    /** refresh fetches the sandbox's current state (and keeps it in info). */
    refresh(opts?: CallOptions): Promise<SandboxInfo>;
    /** kill deletes the sandbox; false when it was already gone. */
    kill(opts?: CallOptions): Promise<boolean>;
    /** setTimeout sets the sandbox's timeout to seconds from now (0: never). */
    setTimeout(seconds: number, opts?: CallOptions): Promise<SandboxInfo>;
    /** suspend saves the sandbox's whole state and stops it; any later call inside it resumes it. */
    suspend(opts?: CallOptions): Promise<SandboxInfo>;
    /** resume brings the suspended sandbox back, with the life it had left. */
    resume(opts?: CallOptions): Promise<SandboxInfo>;
    /** snapshot saves the running sandbox as a snapshot (mode "memory", default, or "filesystem"); it keeps running. */
    snapshot(req?: Omit<CreateSnapshotRequest, 'sandbox'>, opts?: CallOptions): Promise<Snapshot>;
    /** fork checkpoints the sandbox once and starts count copies that continue from that point. */
    fork(req?: ForkRequest, opts?: CallOptions): Promise<ForkResult>;
    /** getNetwork returns the sandbox's egress policy. */
    getNetwork(opts?: CallOptions): Promise<NetworkPolicy>;
    /** setNetwork replaces the sandbox's egress policy; it applies at once. */
    setNetwork(policy: NetworkPolicy, opts?: CallOptions): Promise<NetworkPolicy>;
    /** setPortPublic makes port's URL public (no token) or private again; port 0 is every port. */
    setPortPublic(port: number, isPublic: boolean, opts?: CallOptions): Promise<SandboxInfo>;
    /** portUrl returns the URL of a port inside the sandbox and the headers a request to it sends. */
    portUrl(port: number, opts?: PortURLOptions): Promise<PortURL>;
    /** Deletes the sandbox at the end of an `await using` block. */
    [Symbol.asyncDispose](): Promise<void>;
}
/** Sandboxes is the sandbox part of the API (client.sandboxes). */
export declare class Sandboxes {
    private readonly c;
    /** @internal */
    constructor(c: Client);
    private path;
    /** create creates a sandbox; unset fields take the server's defaults. */
    create(req?: CreateSandboxRequest, opts?: CallOptions): Promise<Sandbox>;
    /** get returns a handle on the sandbox with the given ID or name, with its state. */
    get(idOrName: string, opts?: CallOptions): Promise<Sandbox>;
    /** getInfo returns the state of the sandbox with the given ID or name. */
    getInfo(idOrName: string, opts?: CallOptions): Promise<SandboxInfo>;
    /** listPage returns one page of sandboxes. */
    listPage(opts?: ListSandboxesOptions): Promise<SandboxList>;
    /** list yields every sandbox that matches, fetching pages as it goes. */
    list(opts?: ListSandboxesOptions): AsyncGenerator<SandboxInfo>;
    /** delete deletes the sandbox with the given ID or name. */
    delete(idOrName: string, opts?: CallOptions): Promise<void>;
    /** setTimeout sets the sandbox's timeout to seconds from now (0 removes it). */
    setTimeout(idOrName: string, seconds: number, opts?: CallOptions): Promise<SandboxInfo>;
    /** suspend saves a running sandbox's state and stops it (ConflictError when not running; UnsupportedError when its runtime cannot). */
    suspend(idOrName: string, opts?: CallOptions): Promise<SandboxInfo>;
    /** resume brings a suspended sandbox back (ConflictError when it is not suspended). */
    resume(idOrName: string, opts?: CallOptions): Promise<SandboxInfo>;
    /** fork checkpoints a running sandbox once and starts count (default 1) copies of it. */
    fork(idOrName: string, req?: ForkRequest, opts?: CallOptions): Promise<ForkResult>;
    /** getNetwork returns a sandbox's egress policy. */
    getNetwork(idOrName: string, opts?: CallOptions): Promise<NetworkPolicy>;
    /** setNetwork replaces a sandbox's egress policy (InvalidArgumentError names a bad rule). */
    setNetwork(idOrName: string, policy: NetworkPolicy, opts?: CallOptions): Promise<NetworkPolicy>;
    /** setPort makes a port's URL public or private again (port 0: every port). */
    setPort(idOrName: string, port: number, isPublic: boolean, opts?: CallOptions): Promise<SandboxInfo>;
    /** portUrl returns the URL of a port inside a sandbox and the headers a request to it sends. */
    portUrl(idOrName: string, port: number, opts?: PortURLOptions): Promise<PortURL>;
}
