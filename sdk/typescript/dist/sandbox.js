// Sandboxes: the Sandbox handle (commands, files, terminals, lifecycle) and
// client.sandboxes, the sandbox routes of the API.
import { Client } from './client.js';
import { Commands, Pty } from './commands.js';
import { basicUser } from './connect.js';
import { NotFoundError } from './errors.js';
import { Files } from './files.js';
import { portUrl } from './ports.js';
import { seg } from './transport.js';
const clientKeys = ['client', 'url', 'apiKey', 'sandboxUrl', 'dataDir', 'maxRetries', 'fetch', 'signal'];
/**
 * Sandbox is a handle on one sandbox: its last known state (info) and the
 * operations inside it (commands, files, pty), which go through the
 * server's proxy to the sandbox's guest agent, acting as user when set.
 */
export class Sandbox {
    /** The sandbox's ID. */
    id;
    /** The client the handle talks through. */
    client;
    /** The user of the sandbox that commands and files act as; undefined: the sandbox's default. */
    user;
    /** The sandbox as the API last showed it; undefined for a handle made without asking (client.sandbox). */
    info;
    /** Run and manage processes. */
    commands;
    /** Read and write files. */
    files;
    /** Processes on pseudo-terminals. */
    pty;
    /** @internal Use Sandbox.create, Sandbox.connect, client.sandboxes.get or client.sandbox. */
    constructor(client, id, info, user) {
        this.client = client;
        this.id = id;
        this.info = info;
        this.user = user || undefined;
        const guest = (u) => ({
            transport: client.transport,
            base: `${client.url}/v1/sandboxes/${seg(id)}/envd`,
            headers: (u || this.user) ? { Authorization: basicUser((u || this.user)) } : {},
        });
        this.commands = new Commands(guest);
        this.files = new Files(guest, this.commands);
        this.pty = new Pty(this.commands, guest);
    }
    /** create creates a sandbox and returns its handle once the server answers (running). */
    static async create(opts = {}) {
        const client = opts.client ?? new Client(opts);
        const req = { ...opts };
        for (const k of clientKeys)
            delete req[k];
        return client.sandboxes.create(req, opts.signal ? { signal: opts.signal } : {});
    }
    /** connect returns a handle on the existing sandbox idOrName (it resumes on first use when suspended). */
    static async connect(idOrName, opts = {}) {
        const client = opts.client ?? new Client(opts);
        return client.sandboxes.get(idOrName, opts.signal ? { signal: opts.signal } : {});
    }
    /** asUser returns a handle whose commands and files act as user; this one is unchanged. */
    asUser(user) {
        return new Sandbox(this.client, this.id, this.info, user);
    }
    update(info) {
        this.info = info;
        return info;
    }
    /** refresh fetches the sandbox's current state (and keeps it in info). */
    async refresh(opts = {}) {
        return this.update(await this.client.sandboxes.getInfo(this.id, opts));
    }
    /** kill deletes the sandbox; false when it was already gone. */
    async kill(opts = {}) {
        try {
            await this.client.sandboxes.delete(this.id, opts);
            return true;
        }
        catch (e) {
            if (e instanceof NotFoundError)
                return false;
            throw e;
        }
    }
    /** setTimeout sets the sandbox's timeout to seconds from now (0: never). */
    async setTimeout(seconds, opts = {}) {
        return this.update(await this.client.sandboxes.setTimeout(this.id, seconds, opts));
    }
    /** suspend saves the sandbox's whole state and stops it; any later call inside it resumes it. */
    async suspend(opts = {}) {
        return this.update(await this.client.sandboxes.suspend(this.id, opts));
    }
    /** resume brings the suspended sandbox back, with the life it had left. */
    async resume(opts = {}) {
        return this.update(await this.client.sandboxes.resume(this.id, opts));
    }
    /** snapshot saves the running sandbox as a snapshot (mode "memory", default, or "filesystem"); it keeps running. */
    async snapshot(req = {}, opts = {}) {
        return this.client.snapshots.create({ ...req, sandbox: this.id }, opts);
    }
    /** fork checkpoints the sandbox once and starts count copies that continue from that point. */
    async fork(req = {}, opts = {}) {
        return this.client.sandboxes.fork(this.id, req, opts);
    }
    /** getNetwork returns the sandbox's egress policy. */
    async getNetwork(opts = {}) {
        return this.client.sandboxes.getNetwork(this.id, opts);
    }
    /** setNetwork replaces the sandbox's egress policy; it applies at once. */
    async setNetwork(policy, opts = {}) {
        return this.client.sandboxes.setNetwork(this.id, policy, opts);
    }
    /** setPortPublic makes port's URL public (no token) or private again; port 0 is every port. */
    async setPortPublic(port, isPublic, opts = {}) {
        return this.update(await this.client.sandboxes.setPort(this.id, port, isPublic, opts));
    }
    /** portUrl returns the URL of a port inside the sandbox and the headers a request to it sends. */
    async portUrl(port, opts = {}) {
        return this.client.sandboxes.portUrl(this.id, port, opts);
    }
    /** Deletes the sandbox at the end of an `await using` block. */
    async [Symbol.asyncDispose]() {
        await this.kill();
    }
}
/** Sandboxes is the sandbox part of the API (client.sandboxes). */
export class Sandboxes {
    c;
    /** @internal */
    constructor(c) {
        this.c = c;
    }
    path(id, sub = '') {
        return `/v1/sandboxes/${seg(id)}${sub}`;
    }
    /** create creates a sandbox; unset fields take the server's defaults. */
    async create(req = {}, opts = {}) {
        const info = await this.c.transport.json('POST', '/v1/sandboxes', req, opts);
        return new Sandbox(this.c, info.id, info);
    }
    /** get returns a handle on the sandbox with the given ID or name, with its state. */
    async get(idOrName, opts = {}) {
        const info = await this.getInfo(idOrName, opts);
        return new Sandbox(this.c, info.id, info);
    }
    /** getInfo returns the state of the sandbox with the given ID or name. */
    async getInfo(idOrName, opts = {}) {
        return this.c.transport.json('GET', this.path(idOrName), undefined, opts);
    }
    /** listPage returns one page of sandboxes. */
    async listPage(opts = {}) {
        const state = typeof opts.state === 'string' ? opts.state : opts.state?.join(',');
        const metadata = Object.entries(opts.metadata ?? {})
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([k, v]) => `${k}=${v}`);
        const query = { state: state || undefined, metadata, limit: opts.limit, page_token: opts.pageToken || undefined };
        return this.c.transport.json('GET', '/v1/sandboxes', undefined, { query, signal: opts.signal });
    }
    /** list yields every sandbox that matches, fetching pages as it goes. */
    async *list(opts = {}) {
        let pageToken = opts.pageToken;
        do {
            const page = await this.listPage({ ...opts, ...(pageToken ? { pageToken } : {}) });
            yield* page.sandboxes ?? [];
            pageToken = page.nextPageToken;
        } while (pageToken);
    }
    /** delete deletes the sandbox with the given ID or name. */
    async delete(idOrName, opts = {}) {
        await this.c.transport.json('DELETE', this.path(idOrName), undefined, opts);
    }
    /** setTimeout sets the sandbox's timeout to seconds from now (0 removes it). */
    async setTimeout(idOrName, seconds, opts = {}) {
        return this.c.transport.json('POST', this.path(idOrName, '/timeout'), { timeout: seconds }, opts);
    }
    /** suspend saves a running sandbox's state and stops it (ConflictError when not running; UnsupportedError when its runtime cannot). */
    async suspend(idOrName, opts = {}) {
        return this.c.transport.json('POST', this.path(idOrName, '/suspend'), undefined, opts);
    }
    /** resume brings a suspended sandbox back (ConflictError when it is not suspended). */
    async resume(idOrName, opts = {}) {
        return this.c.transport.json('POST', this.path(idOrName, '/resume'), undefined, opts);
    }
    /** fork checkpoints a running sandbox once and starts count (default 1) copies of it. */
    async fork(idOrName, req = {}, opts = {}) {
        const res = await this.c.transport.json('POST', this.path(idOrName, '/fork'), req, opts);
        const out = { sandboxes: res.sandboxes.map((s) => new Sandbox(this.c, s.id, s)) };
        if (res.snapshot)
            out.snapshot = res.snapshot;
        return out;
    }
    /** getNetwork returns a sandbox's egress policy. */
    async getNetwork(idOrName, opts = {}) {
        return this.c.transport.json('GET', this.path(idOrName, '/network'), undefined, opts);
    }
    /** setNetwork replaces a sandbox's egress policy (InvalidArgumentError names a bad rule). */
    async setNetwork(idOrName, policy, opts = {}) {
        return this.c.transport.json('PUT', this.path(idOrName, '/network'), policy, opts);
    }
    /** setPort makes a port's URL public or private again (port 0: every port). */
    async setPort(idOrName, port, isPublic, opts = {}) {
        return this.c.transport.json('PUT', this.path(idOrName, `/ports/${seg(port)}`), { public: isPublic }, opts);
    }
    /** portUrl returns the URL of a port inside a sandbox and the headers a request to it sends. */
    async portUrl(idOrName, port, opts = {}) {
        return portUrl(this.c.transport, this.c.sandboxUrl, idOrName, port, opts);
    }
}
