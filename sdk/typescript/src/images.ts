// The server's images: list, inspect, tag, remove, prune, import and export
// archives, pull from and push to registries, and build from a Dockerfile.
import { randomBytes } from 'node:crypto'
import { readFile, realpath, stat } from 'node:fs/promises'
import { isAbsolute, join, relative, sep } from 'node:path'
import { DockerIgnore } from './dockerignore.js'
import { DenError } from './errors.js'
import { dirEntries, tarStream, type TarEntry } from './tar.js'
import { seg, type BinaryInput, type CallOptions, type Transport } from './transport.js'
import { fromWire } from './wire.js'
import type { BuildResult, Image, ImageDetails, ImageEvent, ImageList, ImageProgress, PruneImagesResult } from './types.gen.js'

/** Options of a pull or push. */
export interface RegistryOptions extends CallOptions {
  /** Allows plain HTTP to the registry (loopback and private addresses use it anyway). */
  insecure?: boolean
  /** Log in to the registry; default anonymous. */
  username?: string
  password?: string
  /** Called with each progress report, in order. */
  onProgress?: (p: ImageProgress) => void
}

/** Options of a build. */
export interface BuildOptions extends CallOptions {
  /** Names to store the image under. */
  tag?: string | readonly string[]
  /** The Dockerfile: relative to the context directory, or absolute; default "Dockerfile" in it. */
  dockerfile?: string
  /** Values of the Dockerfile's ARGs. */
  buildArgs?: Record<string, string>
  /** The stage to build; default the last. */
  target?: string
  /** Build every step afresh. */
  noCache?: boolean
  /** Pull base images even when the server has them. */
  pull?: boolean
  /** Called with each line of the build's output as it comes. */
  onLog?: (line: string) => void
}

/** Images manages the server's images (client.images). Most changes need an admin key. */
export class Images {
  /** @internal */
  constructor(private readonly t: Transport) {}

  /** list lists the images. */
  async list(opts: CallOptions = {}): Promise<Image[]> {
    const l = await this.t.json<ImageList>('GET', '/v1/images', undefined, opts)
    return l.images ?? []
  }

  /** get returns the image with the given name, ID or unique ID prefix. */
  async get(ref: string, opts: CallOptions = {}): Promise<Image> {
    return this.t.json<Image>('GET', `/v1/images/${seg(ref)}`, undefined, opts)
  }

  /** inspect returns the image with its layers, configuration and history. */
  async inspect(ref: string, opts: CallOptions = {}): Promise<ImageDetails> {
    return this.t.json<ImageDetails>('GET', `/v1/images/${seg(ref)}`, undefined, opts)
  }

  /** tag gives the image ref a further name and returns it under that name. */
  async tag(ref: string, name: string, opts: CallOptions = {}): Promise<Image> {
    return this.t.json<Image>('POST', `/v1/images/${seg(ref)}/tag`, { name }, opts)
  }

  /** remove removes a name of an image (by name) or every name of it (by ID). */
  async remove(ref: string, opts: CallOptions = {}): Promise<void> {
    await this.t.json('DELETE', `/v1/images/${seg(ref)}`, undefined, opts)
  }

  /** prune deletes the layers and blobs no image uses. */
  async prune(opts: CallOptions = {}): Promise<PruneImagesResult> {
    return this.t.json<PruneImagesResult>('POST', '/v1/images/prune', undefined, opts)
  }

  /**
   * import uploads an image archive (docker-archive as `docker save`
   * writes it, or an OCI-layout tar), streamed as it is read, and stores
   * it as name (default: the name in the archive).
   */
  async import(archive: BinaryInput, opts: CallOptions & { name?: string } = {}): Promise<Image> {
    const res = await this.t.request('POST', '/v1/images', {
      query: { name: opts.name || undefined },
      headers: { 'Content-Type': 'application/x-tar', Accept: 'application/json' },
      body: archive,
      signal: opts.signal,
    })
    return (await readJSON(res)) as Image
  }

  /**
   * export returns the image as a tar stream: "docker-archive" (default;
   * `docker load` reads it) or "oci" (an OCI image layout). import reads
   * either back to the same image ID.
   */
  async export(ref: string, opts: CallOptions & { format?: 'docker-archive' | 'oci' } = {}): Promise<ReadableStream<Uint8Array>> {
    const res = await this.t.request('GET', `/v1/images/${seg(ref)}/export`, {
      query: { format: opts.format },
      headers: { Accept: 'application/x-tar, application/json' },
      signal: opts.signal,
    })
    return res.body ?? new ReadableStream({ start: (c) => c.close() })
  }

  /** pull has the server pull ref (e.g. "docker.io/library/alpine:3.20") and store it under that name. */
  async pull(ref: string, opts: RegistryOptions & { platform?: string } = {}): Promise<Image> {
    const body = { ref, insecure: opts.insecure, username: opts.username, password: opts.password, platform: opts.platform }
    for await (const ev of this.events('/v1/images/pull', body, opts)) {
      if (ev.progress) opts.onProgress?.(ev.progress)
      if (ev.image) return ev.image
    }
    throw new DenError(`pull ${ref}: the server ended the answer without a result`)
  }

  /** push pushes the stored image to the registry reference dest and returns the pushed manifest's digest. */
  async push(image: string, dest: string, opts: RegistryOptions = {}): Promise<string> {
    const body = { image, dest, insecure: opts.insecure, username: opts.username, password: opts.password }
    for await (const ev of this.events('/v1/images/push', body, opts)) {
      if (ev.progress) opts.onProgress?.(ev.progress)
      if (ev.digest) return ev.digest
    }
    throw new DenError(`push ${image} to ${dest}: the server ended the answer without a result`)
  }

  private events(path: string, body: object, opts: CallOptions): AsyncGenerator<ImageEvent> {
    const json = JSON.stringify(Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)))
    return this.t.ndjson<ImageEvent>('POST', path, { body: json, headers: { 'Content-Type': 'application/json' }, signal: opts.signal })
  }

  /**
   * build sends the directory contextDir (less what its .dockerignore
   * leaves out) as the build context, streamed as it is read, and has the
   * server build the image its Dockerfile describes. A failed step throws
   * an APIError whose message names the Dockerfile line.
   */
  async build(contextDir: string, opts: BuildOptions = {}): Promise<BuildResult> {
    const ctx = await buildContext(contextDir, opts.dockerfile)
    const tags = typeof opts.tag === 'string' ? [opts.tag] : opts.tag ?? []
    const query = {
      t: tags,
      dockerfile: ctx.dockerfile === 'Dockerfile' ? undefined : ctx.dockerfile,
      target: opts.target || undefined,
      build_arg: Object.entries(opts.buildArgs ?? {}).map(([k, v]) => `${k}=${v}`),
      no_cache: opts.noCache ? '1' : undefined,
      pull: opts.pull ? '1' : undefined,
    }
    const events = this.t.ndjson<ImageEvent>('POST', '/v1/images/build', {
      query,
      headers: { 'Content-Type': 'application/x-tar' },
      body: tarStream(ctx.entries()),
      signal: opts.signal,
    })
    for await (const ev of events) {
      if (ev.log !== undefined) opts.onLog?.(ev.log)
      if (ev.result) return ev.result
    }
    throw new DenError(`build ${contextDir}: the server ended the answer without a result`)
  }
}

async function readJSON(res: Response): Promise<unknown> {
  return fromWire(JSON.parse(await res.text()))
}

/** A build context directory about to be sent as a tar. */
interface BuildContext {
  /** The Dockerfile's slash-separated path in the tar. */
  dockerfile: string
  entries(): AsyncGenerator<TarEntry>
}

/** buildContext prepares contextDir and the Dockerfile for sending (see sdk/go/images_build.go). */
async function buildContext(contextDir: string, dockerfile?: string): Promise<BuildContext> {
  if (!contextDir) throw new DenError('build: no context directory')
  const dir = await realpath(contextDir).catch((e: Error) => {
    throw new DenError(`build context: ${e.message}`)
  })
  if (!(await stat(dir)).isDirectory()) throw new DenError(`build context ${dir} is not a directory`)
  let inTar = 'Dockerfile'
  let outside: string | undefined
  if (dockerfile) {
    const abs = await realpath(isAbsolute(dockerfile) ? dockerfile : join(dir, dockerfile)).catch((e: Error) => {
      throw new DenError(`dockerfile: ${e.message}`)
    })
    const rel = relative(dir, abs)
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) {
      inTar = rel.split(sep).join('/')
    } else {
      outside = abs
      inTar = `.den-dockerfile-${randomBytes(6).toString('hex')}`
    }
  }
  const ignoreText = await readFile(join(dir, '.dockerignore'), 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return ''
    throw e
  })
  const ignore = new DockerIgnore(ignoreText)
  const skip = (rel: string, isDir: boolean): boolean | 'prune' => {
    // The server needs the Dockerfile and .dockerignore whatever the patterns say.
    if (rel === inTar || rel === '.dockerignore' || !ignore.ignored(rel)) return false
    if (!isDir) return true
    const keepBelow = ignore.mayReinclude(rel) || inTar.startsWith(rel + '/')
    return keepBelow ? true : 'prune'
  }
  return {
    dockerfile: inTar,
    async *entries() {
      yield* dirEntries(dir, skip)
      if (outside) {
        const st = await stat(outside)
        yield { name: inTar, type: 'file', mode: st.mode & 0o7777, mtime: st.mtime, path: outside, size: st.size }
      }
    },
  }
}
