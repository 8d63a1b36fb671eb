// A client of the Connect protocol with the JSON codec, enough for the
// guest agent's envd services (process.Process, filesystem.Filesystem):
// unary calls and server streams, over the server's proxy at
// /v1/sandboxes/{id}/envd/.
//
// Unary: POST application/json, the answer is the message or, with a
// non-200 status, {"code","message"}. Server stream: POST
// application/connect+json with one enveloped message; the answer is a
// sequence of envelopes (flags byte, big-endian uint32 length, JSON), the
// last one flagged 0x02 carrying {"error":{...}} or {}.
import { APIError, DenError, apiError } from './errors.js'
import type { CallOptions, Transport } from './transport.js'

/** Envelope flags of the Connect protocol. */
const flagCompressed = 0x01
const flagEndStream = 0x02

/** Seconds between the guest's keepalive messages on a stream. */
const keepaliveSeconds = 30

/** A guest's base URL and the headers its requests carry. */
export interface GuestTarget {
  transport: Transport
  /** Absolute URL of the sandbox's envd proxy, without a trailing slash. */
  base: string
  /** The envd user selection (Authorization: Basic), when set. */
  headers: Record<string, string>
}

/** unary calls procedure ("process.Process/List") with msg. */
export async function unary<Res>(t: GuestTarget, procedure: string, msg: unknown, opts: CallOptions = {}): Promise<Res> {
  let res: Response
  try {
    res = await t.transport.request('POST', '', {
      url: `${t.base}/${procedure}`,
      headers: { ...t.headers, 'Content-Type': 'application/json', 'Connect-Protocol-Version': '1' },
      body: JSON.stringify(msg),
      signal: opts.signal,
    })
  } catch (e) {
    // Connect sends some codes with another HTTP status than den's API
    // (failed_precondition as 400); give every error its code's status,
    // as in streams and in sdk/go.
    if (e instanceof APIError) throw apiError(e.code, e.message, 0, e.retryAfter)
    throw e
  }
  const text = await res.text()
  return (text === '' ? {} : JSON.parse(text)) as Res
}

/**
 * serverStream calls a server-streaming procedure with msg and yields its
 * messages. It throws the stream's error as an APIError, and a DenError
 * when the stream ends without its end message.
 */
export async function* serverStream<Res>(
  t: GuestTarget,
  procedure: string,
  msg: unknown,
  opts: CallOptions = {},
): AsyncGenerator<Res> {
  const res = await t.transport.request('POST', '', {
    url: `${t.base}/${procedure}`,
    headers: {
      ...t.headers,
      'Content-Type': 'application/connect+json',
      'Connect-Protocol-Version': '1',
      'Keepalive-Ping-Interval': String(keepaliveSeconds),
    },
    body: envelope(msg),
    signal: opts.signal,
  })
  if (!res.body) throw new DenError(`${procedure}: the answer has no body`)
  let ended = false
  for await (const env of envelopes(res.body)) {
    // After the end message the body is read to its end, so that its
    // connection is kept: one cancelled before takes its connection along.
    if (ended) return
    if (env.flags & flagCompressed) throw new DenError(`${procedure}: a compressed message, which the SDK never asked for`)
    const body = JSON.parse(new TextDecoder().decode(env.data)) as Record<string, unknown>
    if (env.flags & flagEndStream) {
      const err = body.error as { code?: string; message?: string } | undefined
      if (err) throw apiError(err.code ?? 'unknown', err.message ?? `${procedure} failed`)
      ended = true
      continue
    }
    yield body as Res
  }
  if (ended) return
  throw new DenError(`${procedure}: the stream ended without its end message`)
}

/** envelope frames one JSON message. */
export function envelope(msg: unknown, flags = 0): Uint8Array {
  const data = new TextEncoder().encode(JSON.stringify(msg))
  const out = new Uint8Array(5 + data.length)
  out[0] = flags
  new DataView(out.buffer).setUint32(1, data.length)
  out.set(data, 5)
  return out
}

/** Most bytes one message of a guest may take (as sdk/go's MaxGuestMessage). */
export const maxGuestMessage = 64 << 20

/** envelopes splits a Connect stream body into its envelopes. */
export async function* envelopes(body: AsyncIterable<Uint8Array>): AsyncGenerator<{ flags: number; data: Uint8Array }> {
  let buf: Uint8Array = new Uint8Array(0)
  for await (const chunk of body) {
    buf = concat(buf, chunk)
    while (buf.length >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset, 5).getUint32(1)
      if (len > maxGuestMessage) throw new DenError(`a message of ${len} bytes from the guest, over the limit of ${maxGuestMessage}`)
      if (buf.length < 5 + len) break
      yield { flags: buf[0]!, data: buf.subarray(5, 5 + len) }
      buf = buf.subarray(5 + len)
    }
  }
  if (buf.length > 0) throw new DenError(`the stream ended inside a message (${buf.length} bytes left)`)
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

/** basicUser is the envd user selection header value for user. */
export function basicUser(user: string): string {
  return 'Basic ' + Buffer.from(user + ':').toString('base64')
}

/** b64 encodes bytes for a protobuf JSON bytes field. */
export function b64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')
}

/** unb64 decodes a protobuf JSON bytes field. */
export function unb64(s: string | undefined): Uint8Array {
  if (!s) return new Uint8Array(0)
  const b = Buffer.from(s, 'base64')
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}
