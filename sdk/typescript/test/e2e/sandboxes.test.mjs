// Sandboxes on a real den: create, get, list, timeouts, errors, network
// policy, port URLs, suspend and resume, snapshots and fork; the server's
// info, nodes, cluster members and join tokens.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import {
  Client,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  UnauthenticatedError,
} from '@den/sdk'
import { client, image, sandbox, until } from './helpers.mjs'

test('create, get, list, timeout, delete', async (t) => {
  const run = randomBytes(4).toString('hex')
  const created = await Promise.all([0, 1, 2].map((i) => sandbox(t, { metadata: { suite: run, i: String(i) }, env: { N: String(i) }, cpus: 0.5, memoryMB: 128, diskMB: 256 })))
  const sb = created[0]
  assert.equal(sb.info.state, 'running')
  assert.equal(sb.info.image, image)
  assert.equal(sb.info.cpus, 0.5)
  assert.equal(sb.info.memoryMB, 128)
  assert.equal(sb.info.diskMB, 256)
  assert.equal(sb.info.timeout, 600)
  assert.deepEqual(sb.info.metadata, { suite: run, i: '0' })
  assert.ok(sb.info.createdAt instanceof Date)
  assert.equal((await sb.commands.run('echo $N')).stdout, '0\n')

  const got = await client.sandboxes.get(sb.id)
  assert.equal(got.id, sb.id)
  assert.equal(got.info.state, 'running')
  const connected = await Sandbox.connect(sb.id, { client })
  assert.equal(connected.info.id, sb.id)
  assert.equal((await sb.refresh()).id, sb.id)

  const page = await client.sandboxes.listPage({ metadata: { suite: run }, limit: 1 })
  assert.equal(page.sandboxes.length, 1)
  assert.ok(page.nextPageToken)
  const listed = []
  for await (const s of client.sandboxes.list({ metadata: { suite: run }, limit: 1, state: 'running' })) listed.push(s.id)
  assert.deepEqual(listed.sort(), created.map((s) => s.id).sort())
  const none = []
  for await (const s of client.sandboxes.list({ metadata: { suite: run }, state: ['suspended'] })) none.push(s.id)
  assert.deepEqual(none, [])

  const before = Date.now()
  const info = await sb.setTimeout(1200)
  assert.equal(info.timeout, 1200)
  assert.ok(info.expiresAt.getTime() >= before + 1_100_000)

  assert.equal(await created[2].kill(), true)
  assert.equal(await created[2].kill(), false, 'a second kill finds nothing')
  await assert.rejects(client.sandboxes.get(created[2].id), (e) => e instanceof NotFoundError && e.message === `sandbox ${created[2].id} not found`)
  // What `await using sb = await Sandbox.create()` calls at the end of its block.
  await created[1][Symbol.asyncDispose]()
  await assert.rejects(client.sandboxes.getInfo(created[1].id), (e) => e instanceof NotFoundError)
  await client.sandboxes.delete(created[0].id)
  await assert.rejects(client.sandboxes.delete(created[0].id), (e) => e instanceof NotFoundError && e.message === `sandbox ${created[0].id} not found`)
})

test('errors: exact classes and messages', async () => {
  await assert.rejects(Sandbox.create({ image, cpus: 100, client }), (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument' && e.status === 400 && e.message === 'cpus must be between 0.01 and 64, got 100')
  await assert.rejects(client.sandboxes.get('nope'), (e) => e instanceof NotFoundError && e.code === 'not_found' && e.status === 404 && e.message === 'sandbox nope not found')
  await assert.rejects(client.sandbox('nope').commands.run('true'), (e) => e instanceof NotFoundError && e.message === 'sandbox nope not found')
  await assert.rejects(client.sandbox('nope').files.read('/x'), (e) => e instanceof NotFoundError && e.message === 'sandbox nope not found')
  await assert.rejects(Sandbox.create({ image: 'no-such-image', client }), (e) => e instanceof NotFoundError && e.message === 'get image: image "no-such-image" not found')
  const bad = new Client({ url: client.url, apiKey: 'den_wrong' })
  await assert.rejects(bad.info(), (e) => e instanceof UnauthenticatedError && e.status === 401 && e.message === 'invalid API key')
})

test('network policy', async (t) => {
  const sb = await sandbox(t)
  assert.deepEqual(await sb.getNetwork(), { internet: true })
  const set = await sb.setNetwork({ internet: false, allow: ['example.com', '10.1.2.0/24'], deny: ['*.bad.example'] })
  assert.deepEqual(set, { internet: false, allow: ['example.com', '10.1.2.0/24'], deny: ['*.bad.example'] })
  assert.deepEqual(await client.sandboxes.getNetwork(sb.id), set)
  await assert.rejects(sb.setNetwork({ allow: ['not a rule!'] }), (e) => e instanceof InvalidArgumentError && e.message === 'network policy: rule "not a rule!" is not an IPv4 address, a CIDR, a domain or *.domain')
})

test('ports: token, signed and public URLs', async (t) => {
  const sb = await sandbox(t)
  await sb.files.write('/tmp/www/index.html', 'hello from the sandbox\n')
  await sb.commands.start('httpd -f -p 8080 -h /tmp/www')
  const p = await sb.portUrl(8080)
  assert.equal(p.url, `${new URL(client.sandboxUrl).protocol}//8080-${sb.id}.localhost:${new URL(client.sandboxUrl).port}/`)
  assert.equal(p.listenerHeaders['E2b-Sandbox-Id'], sb.id)
  assert.ok(p.headers['X-Access-Token'])
  const res = await until('httpd to answer', async () => {
    const r = await fetch(p.listenerUrl, { headers: p.listenerHeaders })
    return r.status === 200 ? r : undefined
  })
  assert.equal(await res.text(), 'hello from the sandbox\n')
  const { 'X-Access-Token': _, ...anonymous } = p.listenerHeaders
  assert.equal((await fetch(p.listenerUrl, { headers: anonymous })).status, 401)

  const signed = await sb.portUrl(8080, { signedFor: 60 })
  assert.deepEqual(signed.headers, {})
  assert.match(signed.url, /\?den_signature=v1_[A-Za-z0-9_-]+&den_expires=\d+$/)
  const sres = await fetch(signed.listenerUrl, { headers: signed.listenerHeaders })
  assert.equal(sres.status, 200)
  assert.equal(await sres.text(), 'hello from the sandbox\n')

  const info = await sb.setPortPublic(8080, true)
  assert.deepEqual(info.publicPorts, [8080])
  assert.equal((await fetch(p.listenerUrl, { headers: anonymous })).status, 200)
  const closed = await sb.setPortPublic(8080, false)
  assert.equal(closed.publicPorts, undefined)
  assert.equal((await fetch(p.listenerUrl, { headers: anonymous })).status, 401)
})

test('suspend and resume keep files and processes', async (t) => {
  const sb = await sandbox(t)
  await sb.files.write('/tmp/state.txt', 'kept')
  const bg = await sb.commands.start('sleep 3600', { tag: 'survivor' })
  const suspended = await sb.suspend()
  assert.equal(suspended.state, 'suspended')
  assert.ok(suspended.suspendedAt instanceof Date)
  assert.equal(sb.info.state, 'suspended')
  await assert.rejects(sb.suspend(), (e) => e instanceof FailedPreconditionError && e.status === 409 && e.message === `sandbox ${sb.id} is suspended: only a running sandbox can be suspended`)
  const resumed = await sb.resume()
  assert.equal(resumed.state, 'running')
  assert.equal(await sb.files.readText('/tmp/state.txt'), 'kept')
  const procs = await sb.commands.list()
  assert.ok(procs.some((p) => p.tag === 'survivor' && p.pid === bg.pid), JSON.stringify(procs))
  await assert.rejects(sb.resume(), (e) => e instanceof FailedPreconditionError && e.status === 409 && e.message === `sandbox ${sb.id} is running: only a suspended sandbox can be resumed`)
  // A call inside a suspended sandbox resumes it.
  await sb.suspend()
  assert.equal((await sb.commands.run('cat /tmp/state.txt')).stdout, 'kept')
  assert.equal((await sb.refresh()).state, 'running')
})

test('snapshots and fork', async (t) => {
  const sb = await sandbox(t)
  await sb.files.write('/tmp/origin.txt', 'from the origin')
  const name = `ts-${randomBytes(4).toString('hex')}`
  const snap = await sb.snapshot({ name })
  t.after(() => client.snapshots.delete(snap.id).catch(() => {}))
  assert.equal(snap.name, name)
  assert.equal(snap.sandbox, sb.id)
  assert.equal(snap.mode, 'memory')
  assert.ok(snap.sizeBytes > 0)
  assert.equal((await client.snapshots.get(name)).id, snap.id)
  assert.ok((await client.snapshots.list()).some((s) => s.id === snap.id))
  await assert.rejects(sb.snapshot({ name }), (e) => e.status === 409)

  const clone = await sandbox(t, { snapshot: name, image: undefined })
  assert.equal(clone.info.fromSnapshot, snap.id)
  assert.equal(await clone.files.readText('/tmp/origin.txt'), 'from the origin')

  const usage = await client.snapshots.usage()
  assert.ok(usage.objects.some((o) => o.id === snap.id))
  assert.equal(typeof usage.nodeBytes, 'number')
  const pruned = await client.snapshots.prune({ dryRun: true })
  assert.equal(pruned.dryRun, true)
  assert.ok(Array.isArray(pruned.removed))
  await assert.rejects(client.snapshots.prune({ includeNamed: true }), (e) => e instanceof InvalidArgumentError && e.message === 'older_than_sec and include_named apply to snapshot objects: set objects too')

  const fork = await sb.fork({ count: 2 })
  assert.equal(fork.sandboxes.length, 2)
  for (const f of fork.sandboxes) t.after(() => f.kill())
  for (const f of fork.sandboxes) {
    assert.notEqual(f.id, sb.id)
    assert.equal(await f.files.readText('/tmp/origin.txt'), 'from the origin')
  }
  await fork.sandboxes[0].files.write('/tmp/origin.txt', 'changed in a copy')
  assert.equal(await fork.sandboxes[1].files.readText('/tmp/origin.txt'), 'from the origin')
  assert.equal(await sb.files.readText('/tmp/origin.txt'), 'from the origin')

  await client.snapshots.delete(snap.id)
  await assert.rejects(client.snapshots.get(snap.id), (e) => e instanceof NotFoundError)
})

test('server: info, nodes, cluster members, join tokens', async () => {
  const info = await client.info()
  assert.ok(info.runtimes.length > 0)
  assert.ok(info.runtimeDetails.some((r) => r.default))
  const nodes = await client.nodes.list()
  assert.equal(nodes.length, 1)
  const node = await client.nodes.get(nodes[0].id)
  assert.equal(node.id, info.node)
  assert.equal(node.state, 'ready')
  await assert.rejects(client.nodes.drain(node.id), (e) => e instanceof FailedPreconditionError && e.message === `drain node ${node.id}: draining is for the nodes of a cluster (den server); den up runs only its local node`)
  await assert.rejects(client.nodes.undrain(node.id), (e) => e instanceof FailedPreconditionError)
  await assert.rejects(client.nodes.get('nope'), (e) => e instanceof NotFoundError && e.message === 'node nope not found')
  const members = await client.cluster.members()
  assert.equal(members.members.length, 1)
  assert.equal(members.members[0].role, 'leader')
  await assert.rejects(client.cluster.ca(), (e) => e instanceof FailedPreconditionError && e.message.startsWith('read the cluster CA: this server has no node gateway'))
  await assert.rejects(client.cluster.rotateCA(), (e) => e instanceof FailedPreconditionError && e.message.startsWith('rotate the cluster CA: this server has no node gateway'))
  assert.deepEqual(await client.tokens.list(), [])
  await assert.rejects(client.tokens.create({ ttlSec: 60 }), (e) => e instanceof FailedPreconditionError && e.message === 'create join token: this server has no node gateway (den up runs its own node; join tokens are for den server)')
  await assert.rejects(client.tokens.delete('nope'), (e) => e instanceof NotFoundError && e.message === 'join token nope not found')
})
