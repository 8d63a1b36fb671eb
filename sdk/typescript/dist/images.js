// The server's images: list, inspect, tag, remove, prune, import and export
// archives, pull from and push to registries, and build from a Dockerfile.
import { randomBytes } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { DockerIgnore } from './dockerignore.js';
import { DenError } from './errors.js';
import { dirEntries, tarStream } from './tar.js';
import { seg } from './transport.js';
import { fromWire } from './wire.js';
/** Images manages the server's images (client.images). Most changes need an admin key. */
export class Images {
    t;
    /** @internal */
    constructor(t) {
        this.t = t;
    }
    /** list lists the images. */
    async list(opts = {}) {
        const l = await this.t.json('GET', '/v1/images', undefined, opts);
        return l.images ?? [];
    }
    /** get returns the image with the given name, ID or unique ID prefix. */
    async get(ref, opts = {}) {
        return this.t.json('GET', `/v1/images/${seg(ref)}`, undefined, opts);
    }
    /** inspect returns the image with its layers, configuration and history. */
    async inspect(ref, opts = {}) {
        return this.t.json('GET', `/v1/images/${seg(ref)}`, undefined, opts);
    }
    /** tag gives the image ref a further name and returns it under that name. */
    async tag(ref, name, opts = {}) {
        return this.t.json('POST', `/v1/images/${seg(ref)}/tag`, { name }, opts);
    }
    /** remove removes a name of an image (by name) or every name of it (by ID). */
    async remove(ref, opts = {}) {
        await this.t.json('DELETE', `/v1/images/${seg(ref)}`, undefined, opts);
    }
    /** prune deletes the layers and blobs no image uses. */
    async prune(opts = {}) {
        return this.t.json('POST', '/v1/images/prune', undefined, opts);
    }
    /**
     * import uploads an image archive (docker-archive as `docker save`
     * writes it, or an OCI-layout tar), streamed as it is read, and stores
     * it as name (default: the name in the archive).
     */
    async import(archive, opts = {}) {
        const res = await this.t.request('POST', '/v1/images', {
            query: { name: opts.name || undefined },
            headers: { 'Content-Type': 'application/x-tar', Accept: 'application/json' },
            body: archive,
            signal: opts.signal,
        });
        return (await readJSON(res));
    }
    /**
     * export returns the image as a tar stream: "docker-archive" (default;
     * `docker load` reads it) or "oci" (an OCI image layout). import reads
     * either back to the same image ID.
     */
    async export(ref, opts = {}) {
        const res = await this.t.request('GET', `/v1/images/${seg(ref)}/export`, {
            query: { format: opts.format },
            headers: { Accept: 'application/x-tar, application/json' },
            signal: opts.signal,
        });
        return res.body ?? new ReadableStream({ start: (c) => c.close() });
    }
    /** pull has the server pull ref (e.g. "docker.io/library/alpine:3.20") and store it under that name. */
    async pull(ref, opts = {}) {
        const body = { ref, insecure: opts.insecure, username: opts.username, password: opts.password, platform: opts.platform };
        for await (const ev of this.events('/v1/images/pull', body, opts)) {
            if (ev.progress)
                opts.onProgress?.(ev.progress);
            if (ev.image)
                return ev.image;
        }
        throw new DenError(`pull ${ref}: the server ended the answer without a result`);
    }
    /** push pushes the stored image to the registry reference dest and returns the pushed manifest's digest. */
    async push(image, dest, opts = {}) {
        const body = { image, dest, insecure: opts.insecure, username: opts.username, password: opts.password };
        for await (const ev of this.events('/v1/images/push', body, opts)) {
            if (ev.progress)
                opts.onProgress?.(ev.progress);
            if (ev.digest)
                return ev.digest;
        }
        throw new DenError(`push ${image} to ${dest}: the server ended the answer without a result`);
    }
    events(path, body, opts) {
        const json = JSON.stringify(Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)));
        return this.t.ndjson('POST', path, { body: json, headers: { 'Content-Type': 'application/json' }, signal: opts.signal });
    }
    /**
     * build sends the directory contextDir (less what its .dockerignore
     * leaves out) as the build context, streamed as it is read, and has the
     * server build the image its Dockerfile describes. A failed step throws
     * an APIError whose message names the Dockerfile line.
     */
    async build(contextDir, opts = {}) {
        const ctx = await buildContext(contextDir, opts.dockerfile);
        const tags = typeof opts.tag === 'string' ? [opts.tag] : opts.tag ?? [];
        const query = {
            t: tags,
            dockerfile: ctx.dockerfile === 'Dockerfile' ? undefined : ctx.dockerfile,
            target: opts.target || undefined,
            build_arg: Object.entries(opts.buildArgs ?? {}).map(([k, v]) => `${k}=${v}`),
            no_cache: opts.noCache ? '1' : undefined,
            pull: opts.pull ? '1' : undefined,
        };
        const events = this.t.ndjson('POST', '/v1/images/build', {
            query,
            headers: { 'Content-Type': 'application/x-tar' },
            body: tarStream(ctx.entries()),
            signal: opts.signal,
        });
        for await (const ev of events) {
            if (ev.log !== undefined)
                opts.onLog?.(ev.log);
            if (ev.result)
                return ev.result;
        }
        throw new DenError(`build ${contextDir}: the server ended the answer without a result`);
    }
}
async function readJSON(res) {
    return fromWire(JSON.parse(await res.text()));
}
/** buildContext prepares contextDir and the Dockerfile for sending (see sdk/go/images_build.go). */
async function buildContext(contextDir, dockerfile) {
    if (!contextDir)
        throw new DenError('build: no context directory');
    const dir = await realpath(contextDir).catch((e) => {
        throw new DenError(`build context: ${e.message}`);
    });
    if (!(await stat(dir)).isDirectory())
        throw new DenError(`build context ${dir} is not a directory`);
    let inTar = 'Dockerfile';
    let outside;
    if (dockerfile) {
        const abs = await realpath(isAbsolute(dockerfile) ? dockerfile : join(dir, dockerfile)).catch((e) => {
            throw new DenError(`dockerfile: ${e.message}`);
        });
        const rel = relative(dir, abs);
        if (rel && !rel.startsWith('..') && !isAbsolute(rel)) {
            inTar = rel.split(sep).join('/');
        }
        else {
            outside = abs;
            inTar = `.den-dockerfile-${randomBytes(6).toString('hex')}`;
        }
    }
    const ignoreText = await readFile(join(dir, '.dockerignore'), 'utf8').catch((e) => {
        if (e.code === 'ENOENT')
            return '';
        throw e;
    });
    const ignore = new DockerIgnore(ignoreText);
    const skip = (rel, isDir) => {
        // The server needs the Dockerfile and .dockerignore whatever the patterns say.
        if (rel === inTar || rel === '.dockerignore' || !ignore.ignored(rel))
            return false;
        if (!isDir)
            return true;
        const keepBelow = ignore.mayReinclude(rel) || inTar.startsWith(rel + '/');
        return keepBelow ? true : 'prune';
    };
    return {
        dockerfile: inTar,
        async *entries() {
            yield* dirEntries(dir, skip);
            if (outside) {
                const st = await stat(outside);
                yield { name: inTar, type: 'file', mode: st.mode & 0o7777, mtime: st.mtime, path: outside, size: st.size };
            }
        },
    };
}
