// The transport and the Connect client against a fake server on loopback:
// retries on 429 and 503 only, error bodies to error classes, and Connect
// streams' envelopes. The real server is in test/e2e.
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { test } from 'node:test'
import {
  AlreadyExistsError,
  APIError,
  Client,
  ConflictError,
  InternalError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  UnsupportedError,
} from '@den/sdk'
import { envelope } from '../../dist/connect.js'

/** serve starts a server whose handler answers each request; it returns a client of it. */
async function serve(t, handler) {
  const requests = []
  const server = createServer(async (req, res) => {
    const chunks = []
    for await (const c of req) chunks.push(c)
    const r = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) }
    requests.push(r)
    await handler(r, res, requests.length)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => server.close())
  const client = new Client({ url: `http://127.0.0.1:${server.address().port}`, apiKey: 'key1', maxRetries: 3 })
  return { client, requests }
}

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

test('429 and 503 are retried with backoff, with the body sent again', async (t) => {
  const { client, requests } = await serve(t, (r, res, n) => {
    if (n === 1) return json(res, 503, { code: 'unavailable', message: 'store busy' })
    if (n === 2) return json(res, 429, { code: 'resource_exhausted', message: 'slow down' })
    json(res, 201, { id: 'sb1', image: 'busybox', state: 'running', runtime: 'gvisor', node: 'n', cpus: 1, memory_mb: 64, disk_mb: 64, timeout: 0, created_at: '2026-01-02T03:04:05Z' })
  })
  const sb = await client.sandboxes.create({ image: 'busybox', memoryMB: 64, metadata: { my_key: 'v' } })
  assert.equal(sb.id, 'sb1')
  assert.equal(sb.info.memoryMB, 64)
  assert.ok(sb.info.createdAt instanceof Date)
  assert.equal(sb.info.createdAt.toISOString(), '2026-01-02T03:04:05.000Z')
  assert.equal(requests.length, 3)
  for (const r of requests) {
    assert.equal(r.headers['x-api-key'], 'key1')
    // Keys are snake_case on the wire, but a map's keys are the caller's.
    assert.deepEqual(JSON.parse(r.body), { image: 'busybox', memory_mb: 64, metadata: { my_key: 'v' } })
  }
})

test('retries stop after maxRetries and throw the last error', async (t) => {
  const { client, requests } = await serve(t, (r, res) => json(res, 503, { code: 'unavailable', message: 'the guest agent cannot be reached' }))
  await assert.rejects(client.info(), (e) => e instanceof UnavailableError && e.status === 503 && e.message === 'the guest agent cannot be reached')
  assert.equal(requests.length, 4)
})

test('other errors are not retried, and map to their classes', async (t) => {
  const answers = [
    [404, { code: 'not_found', message: 'sandbox nope not found' }, NotFoundError],
    [409, { code: 'already_exists', message: 'name taken' }, AlreadyExistsError],
    [409, { code: 'conflict', message: 'retry' }, ConflictError],
    [501, { code: 'unsupported', message: 'cannot suspend' }, UnsupportedError],
    [500, 'plain text failure', InternalError],
    [418, { code: 'teapot', message: 'short and stout' }, APIError],
  ]
  const { client, requests } = await serve(t, (r, res, n) => {
    const [status, body] = answers[n - 1]
    if (typeof body === 'string') {
      res.writeHead(status)
      return res.end(body)
    }
    json(res, status, body)
  })
  for (const [status, body, cls] of answers) {
    const err = await client.sandboxes.getInfo('x').then(() => assert.fail('no error'), (e) => e)
    assert.equal(err.constructor, cls)
    assert.equal(err.status, status)
    assert.equal(err.message, typeof body === 'string' ? body : body.message)
    if (typeof body !== 'string') assert.equal(err.code, body.code)
  }
  assert.equal(requests.length, answers.length)
  assert.ok(new AlreadyExistsError('already_exists', 'x', 409) instanceof ConflictError)
})

test('Retry-After is honoured and reported', async (t) => {
  const { client, requests } = await serve(t, (r, res) => json(res, 429, { code: 'resource_exhausted', message: 'over the rate limit' }, { 'Retry-After': '1' }))
  const c0 = new Client({ url: client.url, apiKey: 'k', maxRetries: 0 })
  const err = await c0.info().then(() => assert.fail('no error'), (e) => e)
  assert.ok(err instanceof ResourceExhaustedError)
  assert.equal(err.retryAfter, 1)
  assert.equal(requests.length, 1)
})

test('a Connect stream yields its messages and throws its end error', async (t) => {
  const { client, requests } = await serve(t, (r, res) => {
    res.writeHead(200, { 'Content-Type': 'application/connect+json' })
    const msgs = [
      envelope({ event: { start: { pid: 7 } } }),
      envelope({ event: { data: { stdout: Buffer.from('out').toString('base64') } } }),
      envelope({ event: { keepalive: {} } }),
      envelope({ event: { data: { stderr: Buffer.from('err').toString('base64') } } }),
      envelope({ event: { end: { exitCode: 2, exited: true, status: 'exit status 2' } } }),
      envelope({}, 2),
    ]
    // Split the envelopes across writes at odd places.
    const all = Buffer.concat(msgs)
    for (let i = 0; i < all.length; i += 7) res.write(all.subarray(i, i + 7))
    res.end()
  })
  const sb = client.sandbox('sb1', { user: 'user' })
  const r = await sb.commands.run('echo', { envs: { A: 'b' }, cwd: '/tmp' })
  assert.deepEqual(r, { exitCode: 2, stdout: 'out', stderr: 'err', exited: true, status: 'exit status 2', pid: 7 })
  const req = requests[0]
  assert.equal(req.url, '/v1/sandboxes/sb1/envd/process.Process/Start')
  assert.equal(req.headers['content-type'], 'application/connect+json')
  assert.equal(req.headers.authorization, 'Basic ' + Buffer.from('user:').toString('base64'))
  assert.equal(req.headers['x-api-key'], 'key1')
  assert.equal(req.body[0], 0)
  assert.equal(req.body.readUInt32BE(1), req.body.length - 5)
  assert.deepEqual(JSON.parse(req.body.subarray(5)), { process: { cmd: '/bin/sh', args: ['-c', 'echo'], envs: { A: 'b' }, cwd: '/tmp' } })
})

test('a Connect stream that ends in an error throws it', async (t) => {
  const { client } = await serve(t, (r, res) => {
    res.writeHead(200, { 'Content-Type': 'application/connect+json' })
    res.end(envelope({ error: { code: 'not_found', message: 'no such process' } }, 2))
  })
  await assert.rejects(client.sandbox('s').commands.connect(42), (e) => e instanceof NotFoundError && e.message === 'no such process' && e.status === 404)
})

test('a Connect stream cut before its end is an error', async (t) => {
  const { client } = await serve(t, (r, res) => {
    res.writeHead(200, { 'Content-Type': 'application/connect+json' })
    res.end(envelope({ event: { start: { pid: 1 } } }))
  })
  const h = await client.sandbox('s').commands.start('sleep 1')
  await assert.rejects(h.wait(), { name: 'DenError', message: 'process.Process/Start: the stream ended without its end message' })
})
