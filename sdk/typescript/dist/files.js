// Files of a sandbox: bytes over the guest's /files route, the rest over
// its filesystem.Filesystem service, and whole directories as tar archives
// unpacked or packed by tar inside the sandbox.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, lstat, mkdir, rm, symlink, utimes, chmod } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { serverStream, unary } from './connect.js';
import { DenError, NotFoundError } from './errors.js';
import { dirEntries, readTar, tarStream } from './tar.js';
import { encodeQuery } from './transport.js';
const fileTypes = {
    FILE_TYPE_FILE: 'file',
    FILE_TYPE_DIRECTORY: 'dir',
    FILE_TYPE_SYMLINK: 'symlink',
};
const eventOps = {
    EVENT_TYPE_CREATE: 'create',
    EVENT_TYPE_WRITE: 'write',
    EVENT_TYPE_REMOVE: 'remove',
    EVENT_TYPE_RENAME: 'rename',
    EVENT_TYPE_CHMOD: 'chmod',
};
function entry(e = {}) {
    const info = {
        name: e.name ?? '',
        type: fileTypes[e.type ?? ''] ?? 'other',
        path: e.path ?? '',
        size: Number(e.size ?? 0),
        mode: e.mode ?? 0,
        permissions: e.permissions ?? '',
        owner: e.owner ?? '',
        group: e.group ?? '',
    };
    if (e.modifiedTime)
        info.modifiedTime = new Date(e.modifiedTime);
    if (e.symlinkTarget !== undefined)
        info.symlinkTarget = e.symlinkTarget;
    return info;
}
/** Files reads and changes the files of one sandbox (sandbox.files). */
export class Files {
    guest;
    commands;
    /** @internal */
    constructor(guest, commands) {
        this.guest = guest;
        this.commands = commands;
    }
    async files(method, path, opts, body) {
        const t = this.guest(opts.user);
        const headers = { ...t.headers };
        if (body !== undefined)
            headers['Content-Type'] = 'application/octet-stream';
        return t.transport.request(method, '', {
            url: `${t.base}/files?${encodeQuery({ path })}`,
            headers,
            ...(body !== undefined ? { body } : {}),
            signal: opts.signal,
        });
    }
    /**
     * readStream opens the file at path (relative paths are relative to the
     * user's home) and returns its content as a stream.
     */
    async readStream(path, opts = {}) {
        const res = await this.files('GET', path, opts);
        return res.body ?? new ReadableStream({ start: (c) => c.close() });
    }
    /** read returns the bytes of the file at path. */
    async read(path, opts = {}) {
        const res = await this.files('GET', path, opts);
        return new Uint8Array(await res.arrayBuffer());
    }
    /** readText returns the file at path decoded as UTF-8. */
    async readText(path, opts = {}) {
        const res = await this.files('GET', path, opts);
        return res.text();
    }
    /**
     * write creates or replaces the file at path with data (text, bytes, a
     * Blob or a stream, sent as it is read), creating missing parent
     * directories. The file is replaced only once all of data arrived.
     */
    async write(path, data, opts = {}) {
        const res = await this.files('POST', path, opts, data);
        const out = (await res.json());
        return out[0] ?? { path, name: path.split('/').pop() ?? path, type: 'file' };
    }
    /** list lists the directory at path, descending depth levels (default 1: its own entries). */
    async list(path, opts = {}) {
        const res = await unary(this.guest(opts.user), 'filesystem.Filesystem/ListDir', { path, depth: opts.depth ?? 1 }, opts);
        return (res.entries ?? []).map(entry);
    }
    /** stat describes the entry at path (a symbolic link itself, not its target). */
    async stat(path, opts = {}) {
        const res = await unary(this.guest(opts.user), 'filesystem.Filesystem/Stat', { path }, opts);
        return entry(res.entry);
    }
    /** exists reports whether path exists. */
    async exists(path, opts = {}) {
        try {
            await this.stat(path, opts);
            return true;
        }
        catch (e) {
            if (e instanceof NotFoundError)
                return false;
            throw e;
        }
    }
    /** makeDir creates the directory at path with its parents; AlreadyExistsError when path exists. */
    async makeDir(path, opts = {}) {
        const res = await unary(this.guest(opts.user), 'filesystem.Filesystem/MakeDir', { path }, opts);
        return entry(res.entry);
    }
    /** remove removes the file or directory (with its contents) at path. */
    async remove(path, opts = {}) {
        await unary(this.guest(opts.user), 'filesystem.Filesystem/Remove', { path }, opts);
    }
    /** move renames src to dst and describes the entry at its new place. */
    async move(src, dst, opts = {}) {
        const res = await unary(this.guest(opts.user), 'filesystem.Filesystem/Move', { source: src, destination: dst }, opts);
        return entry(res.entry);
    }
    /**
     * watch starts watching the directory at path (with its subdirectories
     * when recursive) and resolves once the guest watches, so that changes
     * made after it resolves are reported. Iterate the watcher for the
     * events; close() (or leaving the loop, or the signal) ends it.
     */
    async watch(path, opts = {}) {
        const abort = new AbortController();
        const onAbort = () => abort.abort(opts.signal?.reason);
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const req = { path, recursive: opts.recursive ?? false, includeEntry: true };
        const stream = serverStream(this.guest(opts.user), 'filesystem.Filesystem/WatchDir', req, { signal: abort.signal });
        try {
            for (;;) {
                const first = await stream.next();
                if (first.done)
                    throw new DenError(`watch ${path}: the stream ended before the watch started`);
                if (first.value.start)
                    break;
            }
        }
        catch (e) {
            abort.abort();
            opts.signal?.removeEventListener('abort', onAbort);
            throw e;
        }
        return new Watcher(stream, abort, () => opts.signal?.removeEventListener('abort', onAbort));
    }
    /**
     * uploadDir copies the local directory localDir (its files, directories
     * and symbolic links) into remoteDir in the sandbox, creating it. The
     * directory travels as one tar archive, written to a temporary file in
     * the sandbox's /tmp and unpacked there by the sandbox's tar (busybox
     * and every common image have one).
     */
    async uploadDir(localDir, remoteDir, opts = {}) {
        const tmp = `/tmp/.den-upload-${randomBytes(8).toString('hex')}.tar`;
        await this.write(tmp, tarStream(dirEntries(localDir)), opts);
        const script = 'mkdir -p -- "$1" && tar -x -f "$2" -C "$1"; rc=$?; rm -f -- "$2"; exit $rc';
        const r = await this.commands.run(['/bin/sh', '-c', script, 'sh', remoteDir, tmp], opts);
        if (r.exitCode !== 0)
            throw new DenError(`upload ${localDir} to ${remoteDir}: tar in the sandbox failed (${r.status}): ${r.stderr.trim()}`);
    }
    /**
     * downloadDir copies the directory remoteDir of the sandbox into the
     * local directory localDir (created when missing): the sandbox's tar
     * packs it and its output is unpacked here as it arrives. Entries that
     * would land outside localDir are refused.
     */
    async downloadDir(remoteDir, localDir, opts = {}) {
        let stderr = '';
        let pid = 0;
        let exit;
        const events = this.commands.stream(['tar', '-c', '-f', '-', '-C', remoteDir, '.'], opts);
        async function* stdout() {
            for await (const ev of events) {
                if (ev.type === 'start')
                    pid = ev.pid;
                else if (ev.type === 'stdout')
                    yield ev.data;
                else if (ev.type === 'stderr')
                    stderr += new TextDecoder().decode(ev.data);
                else if (ev.type === 'exit')
                    exit = ev;
            }
        }
        const out = stdout();
        // The archive ends before the stream does (padding, the exit status):
        // extractTar must not close the stream, which is read to its end below.
        const archive = { [Symbol.asyncIterator]: () => ({ next: () => out.next() }) };
        try {
            await extractTar(archive, localDir);
            while (!(await out.next()).done) {
                // Drain what follows the archive.
            }
        }
        catch (e) {
            await out.return(undefined);
            if (pid && !exit)
                await this.commands.kill(pid).catch(() => { });
            if (exit && exit.exitCode !== 0)
                throw new DenError(`download ${remoteDir}: tar in the sandbox failed (${exit.status}): ${stderr.trim()}`);
            throw e;
        }
        if (!exit)
            throw new DenError(`download ${remoteDir}: the sandbox's tar did not finish`);
        if (exit.exitCode !== 0)
            throw new DenError(`download ${remoteDir}: tar in the sandbox failed (${exit.status}): ${stderr.trim()}`);
    }
}
/** Watcher streams the changes of a watched directory; iterate it once. */
export class Watcher {
    stream;
    abort;
    release;
    /** @internal */
    constructor(stream, abort, release) {
        this.stream = stream;
        this.abort = abort;
        this.release = release;
    }
    async *[Symbol.asyncIterator]() {
        try {
            for await (const msg of this.stream) {
                const fe = msg.filesystem;
                if (!fe)
                    continue; // a keepalive
                const ev = { name: fe.name ?? '', op: eventOps[fe.type ?? ''] ?? 'write' };
                if (fe.entry)
                    ev.entry = entry(fe.entry);
                yield ev;
            }
        }
        catch (e) {
            if (!this.abort.signal.aborted)
                throw e;
        }
        finally {
            this.close();
        }
    }
    /** close stops the watch; an iteration in progress ends. Safe to call more than once. */
    close() {
        this.abort.abort();
        this.release();
    }
}
/**
 * extractTar unpacks a tar stream into dir. Names must stay inside dir (no
 * absolute names, no ".."); symbolic links are made last, so that no entry
 * is written through one the archive made.
 */
export async function extractTar(src, dir) {
    const root = resolve(dir);
    await mkdir(root, { recursive: true });
    const links = [];
    const dirTimes = [];
    for await (const { header: h, body } of readTar(src)) {
        const name = h.name.replace(/^(\.\/)+/, '');
        if (name === '' || name === '.')
            continue;
        if (isAbsolute(name) || name.split('/').includes('..'))
            throw new DenError(`tar: refusing the entry ${JSON.stringify(h.name)}, outside the directory`);
        const p = join(root, ...name.split('/'));
        if (!p.startsWith(root + sep))
            throw new DenError(`tar: refusing the entry ${JSON.stringify(h.name)}, outside the directory`);
        await noLinkBelow(root, p, h.name);
        switch (h.type) {
            case 'dir':
                await mkdir(p, { recursive: true });
                dirTimes.push({ path: p, mtime: h.mtime, mode: h.mode });
                break;
            case 'file':
                await mkdir(dirname(p), { recursive: true });
                await rm(p, { force: true });
                await pipeline(Readable.from(body), createWriteStream(p, { mode: h.mode || 0o644 }));
                await chmod(p, h.mode || 0o644);
                await utimes(p, h.mtime, h.mtime);
                break;
            case 'symlink':
                links.push({ path: p, target: h.linkname ?? '' });
                break;
            case 'hardlink': {
                const target = (h.linkname ?? '').replace(/^(\.\/)+/, '');
                const tp = join(root, ...target.split('/'));
                if (isAbsolute(target) || target.split('/').includes('..') || !tp.startsWith(root + sep)) {
                    throw new DenError(`tar: refusing the hard link ${JSON.stringify(h.name)} to ${JSON.stringify(h.linkname)}, outside the directory`);
                }
                await mkdir(dirname(p), { recursive: true });
                await rm(p, { force: true });
                await link(tp, p);
                break;
            }
            default:
                break; // devices and fifos are left out
        }
    }
    for (const l of links) {
        await noLinkBelow(root, l.path, l.path);
        await mkdir(dirname(l.path), { recursive: true });
        const st = await lstat(l.path).catch(() => undefined);
        if (st && !st.isDirectory())
            await rm(l.path);
        await symlink(l.target, l.path);
    }
    for (const d of dirTimes.reverse()) {
        await chmod(d.path, d.mode || 0o755);
        await utimes(d.path, d.mtime, d.mtime);
    }
}
/** noLinkBelow refuses a path of root whose parents below root include a symbolic link. */
async function noLinkBelow(root, p, name) {
    const parts = p.slice(root.length + 1).split(sep).slice(0, -1);
    let cur = root;
    for (const part of parts) {
        cur = join(cur, part);
        const st = await lstat(cur).catch(() => undefined);
        if (!st)
            return;
        if (st.isSymbolicLink())
            throw new DenError(`tar: refusing the entry ${JSON.stringify(name)}, below the symbolic link ${cur}`);
    }
}
