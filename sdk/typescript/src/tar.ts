// A minimal tar writer and reader (POSIX ustar, with pax headers for long
// names and large files; GNU long names when reading), enough to move
// directories in and out of sandboxes and to send Docker build contexts,
// without a dependency.
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { DenError } from './errors.js'

const block = 512
const enc = new TextEncoder()

/** A tar entry's header. */
export interface TarHeader {
  /** Slash-separated path; directories end without "/". */
  name: string
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other'
  /** Permission bits. */
  mode: number
  size: number
  mtime: Date
  /** Target of a symbolic or hard link. */
  linkname?: string
}

/** One entry to write; a file's content comes from path or data. */
export interface TarEntry extends Omit<TarHeader, 'size'> {
  size?: number
  /** Local file whose bytes are the content (read when written). */
  path?: string
  data?: Uint8Array
}

const typeFlags: Record<TarHeader['type'], string> = { file: '0', hardlink: '1', symlink: '2', dir: '5', other: '0' }

/**
 * tarStream yields a tar archive of entries, reading file contents as it
 * goes; owners are left out (uid and gid 0, no names).
 */
export async function* tarStream(entries: AsyncIterable<TarEntry> | Iterable<TarEntry>): AsyncGenerator<Uint8Array> {
  for await (const e of entries) {
    const size = e.type === 'file' ? (e.data?.length ?? e.size ?? 0) : 0
    yield header({ ...e, size })
    if (e.type !== 'file') continue
    let written = 0
    if (e.data) {
      yield e.data
      written = e.data.length
    } else if (e.path) {
      // Read at most size bytes: a file that grows meanwhile must not overrun its header.
      if (size > 0) {
        for await (const chunk of createReadStream(e.path, { end: size - 1 })) {
          const b = chunk as Buffer
          written += b.length
          yield new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
        }
      }
      if (written < size) throw new DenError(`tar: ${e.path} shrank while it was read (${written} of ${size} bytes)`)
    }
    const pad = (block - (written % block)) % block
    if (pad) yield new Uint8Array(pad)
  }
  yield new Uint8Array(2 * block)
}

/** header renders one entry's header blocks: a pax header first when needed. */
function header(h: TarHeader): Uint8Array {
  const pax: Record<string, string> = {}
  const name = h.type === 'dir' ? `${h.name}/` : h.name
  let [prefix, base] = splitName(name)
  if (base === undefined) {
    pax.path = name
    prefix = ''
    base = truncate(name, 100)
  }
  let linkname = h.linkname ?? ''
  if (enc.encode(linkname).length > 100) {
    pax.linkpath = linkname
    linkname = truncate(linkname, 100)
  }
  if (h.size > 0o77777777777) pax.size = String(h.size)
  const main = ustar(base, prefix, h, linkname, typeFlags[h.type], pax.size ? 0 : h.size)
  if (Object.keys(pax).length === 0) return main
  const body = enc.encode(Object.entries(pax).map(([k, v]) => paxRecord(k, v)).join(''))
  const paxHdr = ustar('PaxHeader', '', { ...h, mode: 0o644 }, '', 'x', body.length)
  const padded = new Uint8Array(Math.ceil(body.length / block) * block)
  padded.set(body)
  return concat([paxHdr, padded, main])
}

/** paxRecord renders "LEN key=value\n", where LEN counts itself. */
function paxRecord(k: string, v: string): string {
  const rest = ` ${k}=${v}\n`
  const restLen = enc.encode(rest).length
  let len = restLen + 1
  while (String(len).length + restLen !== len) len++
  return `${len}${rest}`
}

/** splitName fits name into ustar's prefix (155) and name (100) fields; base undefined when it cannot. */
function splitName(name: string): [string, string | undefined] {
  if (enc.encode(name).length <= 100) return ['', name]
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i)
    const base = name.slice(i + 1)
    if (enc.encode(prefix).length <= 155 && enc.encode(base).length <= 100 && base !== '') return [prefix, base]
  }
  return ['', undefined]
}

function truncate(s: string, n: number): string {
  let b = enc.encode(s)
  if (b.length <= n) return s
  b = b.subarray(0, n)
  return new TextDecoder().decode(b).replace(/\uFFFD+$/, '')
}

function ustar(name: string, prefix: string, h: TarHeader, linkname: string, flag: string, size: number): Uint8Array {
  const b = new Uint8Array(block)
  put(b, 0, 100, name)
  octal(b, 100, 8, h.mode & 0o7777)
  octal(b, 108, 8, 0)
  octal(b, 116, 8, 0)
  octal(b, 124, 12, size)
  octal(b, 136, 12, Math.max(0, Math.floor(h.mtime.getTime() / 1000)))
  b.fill(0x20, 148, 156) // checksum counted as spaces
  put(b, 156, 1, flag)
  put(b, 157, 100, linkname)
  put(b, 257, 6, 'ustar')
  put(b, 263, 2, '00')
  put(b, 345, 155, prefix)
  let sum = 0
  for (const x of b) sum += x
  octal(b, 148, 7, sum)
  b[155] = 0x20
  return b
}

function put(b: Uint8Array, off: number, len: number, s: string): void {
  b.set(enc.encode(s).subarray(0, len), off)
}

function octal(b: Uint8Array, off: number, len: number, n: number): void {
  put(b, off, len - 1, n.toString(8).padStart(len - 1, '0'))
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}

/**
 * dirEntries walks a local directory (not following symbolic links) and
 * yields its entries with names relative to it, parents before children,
 * in name order. skip, when given, leaves out an entry (and, for a
 * directory, may return "prune" to skip its contents as well).
 */
export async function* dirEntries(
  root: string,
  skip?: (rel: string, isDir: boolean) => boolean | 'prune',
  rel = '',
): AsyncGenerator<TarEntry> {
  const names = (await readdir(join(root, rel))).sort()
  for (const n of names) {
    const r = rel ? `${rel}/${n}` : n
    const p = join(root, r)
    const st = await lstat(p)
    const s = skip?.(r, st.isDirectory()) ?? false
    if (s === 'prune') continue
    const base = { name: r, mode: st.mode & 0o7777, mtime: st.mtime }
    if (st.isDirectory()) {
      if (!s) yield { ...base, type: 'dir' }
      yield* dirEntries(root, skip, r)
    } else if (s) {
      continue
    } else if (st.isSymbolicLink()) {
      yield { ...base, type: 'symlink', linkname: await readlink(p) }
    } else if (st.isFile()) {
      yield { ...base, type: 'file', path: p, size: st.size }
    }
    // Sockets, devices and pipes are left out, as docker does.
  }
}

/** A reader of exact byte counts over a stream of chunks. */
class ByteReader {
  private buf: Uint8Array = new Uint8Array(0)
  private readonly it: AsyncIterator<Uint8Array>
  constructor(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.it = Symbol.asyncIterator in src ? src[Symbol.asyncIterator]() : (async function* () {
      yield* src
    })()
  }

  /** read returns exactly n bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Uint8Array> {
    while (this.buf.length < n) {
      const { value, done } = await this.it.next()
      if (done) break
      this.buf = this.buf.length === 0 ? value : concat([this.buf, value])
    }
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(out.length)
    return out
  }

  /** Bytes of the current entry's body not yet handed out by chunks. */
  left = 0

  /** chunks yields the next n bytes as they arrive, counting them down in left. */
  async *chunks(n: number): AsyncGenerator<Uint8Array> {
    this.left = n
    while (this.left > 0) {
      if (this.buf.length === 0) {
        const { value, done } = await this.it.next()
        if (done) throw new DenError('tar: the archive ends inside a file')
        this.buf = value
      }
      const out = this.buf.subarray(0, this.left)
      this.buf = this.buf.subarray(out.length)
      this.left -= out.length
      yield out
    }
  }

  /** skip drops n bytes. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const got = await this.read(Math.min(n, 1 << 20))
      if (got.length === 0) throw new DenError('tar: the archive ends inside a file')
      n -= got.length
    }
  }

  async close(): Promise<void> {
    await this.it.return?.()
  }
}

/** One entry read from an archive; body must be consumed (or skipped) before the next. */
export interface TarReadEntry {
  header: TarHeader
  body: AsyncGenerator<Uint8Array>
}

/** readTar yields the entries of a tar archive as it arrives. */
export async function* readTar(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<TarReadEntry> {
  const r = new ByteReader(src)
  try {
    let pax: Record<string, string> = {}
    let longName: string | undefined
    let longLink: string | undefined
    for (;;) {
      const b = await r.read(block)
      if (b.length === 0 || b.every((x) => x === 0)) return
      if (b.length < block) throw new DenError('tar: the archive ends inside a header')
      const flag = String.fromCharCode(b[156]!)
      let size = parseNum(b.subarray(124, 136))
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        const data = await r.read(size)
        await r.read((block - (size % block)) % block)
        const text = new TextDecoder().decode(data)
        if (flag === 'x') pax = parsePax(text)
        else if (flag === 'L') longName = text.replace(/\0+$/, '')
        else if (flag === 'K') longLink = text.replace(/\0+$/, '')
        continue
      }
      if (pax.size !== undefined) size = Number(pax.size)
      const prefix = str(b.subarray(345, 500))
      let name = pax.path ?? longName ?? (prefix ? `${prefix}/${str(b.subarray(0, 100))}` : str(b.subarray(0, 100)))
      const linkname = pax.linkpath ?? longLink ?? str(b.subarray(157, 257))
      pax = {}
      longName = longLink = undefined
      const type: TarHeader['type'] =
        flag === '0' || flag === '\0' || flag === '7' ? 'file' : flag === '5' ? 'dir' : flag === '2' ? 'symlink' : flag === '1' ? 'hardlink' : 'other'
      if (type === 'file' && name.endsWith('/')) continue // old-style directory entry
      name = name.replace(/\/+$/, '')
      const h: TarHeader = { name, type, mode: parseNum(b.subarray(100, 108)) & 0o7777, size: type === 'file' || type === 'other' ? size : 0, mtime: new Date(parseNum(b.subarray(136, 148)) * 1000) }
      if (linkname) h.linkname = linkname
      r.left = h.size
      yield { header: h, body: r.chunks(h.size) }
      await r.skip(r.left) // what the consumer left unread
      await r.read((block - (h.size % block)) % block)
    }
  } finally {
    await r.close()
  }
}

function str(b: Uint8Array): string {
  const end = b.indexOf(0)
  return new TextDecoder().decode(end < 0 ? b : b.subarray(0, end))
}

function parseNum(b: Uint8Array): number {
  if (b[0]! & 0x80) {
    // GNU base-256 for large values.
    let n = 0
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!
    return n
  }
  const s = str(b).trim()
  return s === '' ? 0 : parseInt(s, 8)
}

function parsePax(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const bytes = enc.encode(text)
  let off = 0
  while (off < bytes.length) {
    const sp = bytes.indexOf(0x20, off)
    if (sp < 0) break
    const len = parseInt(new TextDecoder().decode(bytes.subarray(off, sp)), 10)
    if (!(len > 0)) break
    const rec = new TextDecoder().decode(bytes.subarray(sp + 1, off + len - 1))
    const eq = rec.indexOf('=')
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1)
    off += len
  }
  return out
}
