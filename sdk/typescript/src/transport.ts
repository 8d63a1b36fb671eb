// Transport carries the SDK's HTTP requests over Node's fetch: the API key,
// JSON bodies in the wire's shape, errors as APIError, and retries with
// backoff on 429 and 503 (only those, and only for bodies it can send
// again).
import { APIError, DenError, errorFromBody } from './errors.js'
import { fromWire, toWire } from './wire.js'

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal
}

/** Query parameters; arrays repeat the parameter, undefined drops it. */
export type Query = Record<string, string | number | boolean | readonly string[] | undefined>

/** Binary data the SDK sends: bytes, text, a Blob, or a stream of bytes. */
export type BinaryInput =
  | string
  | Uint8Array
  | ArrayBuffer
  | Blob
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>

/** Settings of the transport. */
export interface TransportOptions {
  url: string
  apiKey: string
  /** Retries of a request answered 429 or 503; default 3. */
  maxRetries?: number
  /** The fetch to use; default globalThis.fetch. */
  fetch?: typeof fetch
}

export interface RequestInit2 {
  query?: Query
  body?: BinaryInput
  headers?: Record<string, string>
  signal?: AbortSignal | undefined
  /** Absolute URL to use instead of the API base plus path. */
  url?: string
}

/** Backoff of the first retry; each next one doubles, up to maxBackoffMs. */
const baseBackoffMs = 250
const maxBackoffMs = 8000

export class Transport {
  readonly url: string
  readonly apiKey: string
  readonly maxRetries: number
  private readonly fetchFn: typeof fetch

  constructor(opts: TransportOptions) {
    this.url = opts.url
    this.apiKey = opts.apiKey
    this.maxRetries = opts.maxRetries ?? 3
    this.fetchFn = opts.fetch ?? globalThis.fetch
  }

  /** endpoint is the absolute URL of an API path (already escaped). */
  endpoint(path: string, query?: Query): string {
    let u = this.url + path
    const q = encodeQuery(query)
    if (q) u += (u.includes('?') ? '&' : '?') + q
    return u
  }

  /**
   * request sends one request and returns the 2xx response, whose body
   * the caller consumes. A non-2xx answer throws its APIError; 429 and 503
   * are retried with backoff when the body can be sent again.
   */
  async request(method: string, path: string, init: RequestInit2 = {}): Promise<Response> {
    const url = init.url ?? this.endpoint(path, init.query)
    const replayable = !isStream(init.body)
    for (let attempt = 0; ; attempt++) {
      const res = await this.send(method, url, init)
      if (res.ok) return res
      const err = await readError(res)
      const retryable = (res.status === 429 || res.status === 503) && replayable
      if (!retryable || attempt >= this.maxRetries) throw err
      await sleep(backoff(attempt, err.retryAfter), init.signal)
    }
  }

  private async send(method: string, url: string, init: RequestInit2): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers }
    if (this.apiKey) headers['X-API-Key'] = this.apiKey
    const req: RequestInit & { duplex?: 'half' } = { method, headers }
    if (init.signal) req.signal = init.signal
    if (init.body !== undefined) {
      req.body = toBody(init.body)
      if (isStream(init.body)) req.duplex = 'half'
    }
    try {
      return await this.fetchFn(url, req)
    } catch (e) {
      if (init.signal?.aborted) throw init.signal.reason ?? e
      const cause = (e as { cause?: { message?: string } }).cause
      const why = cause?.message ?? (e as Error).message
      throw new DenError(`${method} ${redact(url)}: ${why}`, { cause: e })
    }
  }

  /** json sends body (an SDK object, converted to the wire's shape) and decodes the answer. */
  async json<T>(method: string, path: string, body?: unknown, init: RequestInit2 = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json', ...init.headers }
    const req: RequestInit2 = { ...init, headers }
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json'
      req.body = JSON.stringify(toWire(body))
    }
    const res = await this.request(method, path, req)
    if (res.status === 204) return undefined as T
    const text = await res.text()
    if (text === '') return undefined as T
    return fromWire<T>(JSON.parse(text))
  }

  /**
   * ndjson sends a request whose answer is an NDJSON stream (image pull,
   * push and build) and yields each line, decoded. A line with an error
   * throws its APIError.
   */
  async *ndjson<T>(method: string, path: string, init: RequestInit2 = {}): AsyncGenerator<T> {
    const headers = { Accept: 'application/x-ndjson, application/json', ...init.headers }
    const res = await this.request(method, path, { ...init, headers })
    for await (const line of lines(res.body)) {
      if (line.trim() === '') continue
      const ev = JSON.parse(line) as { error?: { code: string; message: string } }
      if (ev.error) throw errorFromBody(0, JSON.stringify(ev.error)) // status from the code
      yield fromWire<T>(ev)
    }
  }
}

/** encodeQuery renders q as a query string without the "?". */
export function encodeQuery(q?: Query): string {
  if (!q) return ''
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined) continue
    if (Array.isArray(v)) for (const x of v) p.append(k, x)
    else p.append(k, String(v))
  }
  return p.toString()
}

/** readError builds the APIError of a non-2xx response. */
export async function readError(res: Response): Promise<APIError> {
  let text = ''
  try {
    text = await res.text()
  } catch {
    // The body broke; the status still says what happened.
  }
  const ra = Number(res.headers.get('Retry-After'))
  return errorFromBody(res.status, text.slice(0, 64 << 10), Number.isFinite(ra) && ra > 0 ? ra : undefined)
}

function backoff(attempt: number, retryAfter?: number): number {
  if (retryAfter !== undefined) return Math.min(retryAfter * 1000, 60_000)
  const ms = Math.min(baseBackoffMs * 2 ** attempt, maxBackoffMs)
  return ms / 2 + Math.random() * (ms / 2)
}

/** sleep waits ms, or rejects with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(t)
      reject(signal!.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function isStream(b: BinaryInput | undefined): boolean {
  return b !== undefined && typeof b !== 'string' && !(b instanceof Uint8Array) && !(b instanceof ArrayBuffer) && !(b instanceof Blob)
}

/** toBody converts a BinaryInput to what fetch sends. */
function toBody(b: BinaryInput): NonNullable<RequestInit['body']> {
  if (typeof b === 'string' || b instanceof Uint8Array || b instanceof ArrayBuffer || b instanceof Blob) return b
  if (b instanceof ReadableStream) return b
  return iterableStream(b)
}

/** iterableStream is a ReadableStream over an async iterable of bytes. */
export function iterableStream(it: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iter = it[Symbol.asyncIterator]()
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      const { value, done } = await iter.next()
      if (done) ctrl.close()
      else ctrl.enqueue(value)
    },
    async cancel(reason) {
      await iter.return?.(reason)
    },
  })
}

/** lines yields the lines of a body of text, without their newlines. */
export async function* lines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string> {
  if (!body) return
  const dec = new TextDecoder()
  let buf = ''
  for await (const chunk of body) {
    buf += dec.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      yield buf.slice(0, nl)
      buf = buf.slice(nl + 1)
    }
  }
  buf += dec.decode()
  if (buf !== '') yield buf
}

/** redact drops the query of a URL for messages (it may hold secrets). */
function redact(url: string): string {
  const i = url.indexOf('?')
  return i < 0 ? url : url.slice(0, i)
}

/** seg escapes one path segment: an ID, a name, an image ref (/ as %2F). */
export function seg(s: string | number): string {
  return encodeURIComponent(String(s))
}
