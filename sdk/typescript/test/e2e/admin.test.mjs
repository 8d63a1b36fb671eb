// Tenants, API keys, SSH keys and warm pools on a real den.
import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import {
  AlreadyExistsError,
  Client,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  Sandbox,
  UnauthenticatedError,
} from '@den/sdk'
import { client, image, until } from './helpers.mjs'

const suffix = randomBytes(3).toString('hex')

/** sshPublicKey returns a fresh ed25519 public key as an authorized_keys line. */
function sshPublicKey(comment) {
  const { publicKey } = generateKeyPairSync('ed25519')
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
  const str = (b) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b])
  return `ssh-ed25519 ${Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64')} ${comment}`
}

test('tenants and API keys', async (t) => {
  const name = `ts-${suffix}`
  const tenant = await client.tenants.create({ name, quota: { sandboxes: 1 }, rateLimit: { perSecond: 50, burst: 100 } })
  t.after(() => client.tenants.delete(name).catch(() => {}))
  assert.equal(tenant.name, name)
  assert.deepEqual(tenant.quota, { sandboxes: 1, vcpus: 0, memoryMB: 0, snapshots: 0 })
  assert.deepEqual(tenant.rateLimit, { perSecond: 50, burst: 100 })
  await assert.rejects(client.tenants.create({ name }), (e) => e instanceof AlreadyExistsError && e.status === 409 && e.message === `tenant ${name} exists`)
  await assert.rejects(
    client.tenants.create({ name: 'Bad Name' }),
    (e) => e instanceof InvalidArgumentError && e.message === 'tenant name "Bad Name" is invalid: use 1 to 63 lowercase letters, digits and \'-\', starting with a letter or digit',
  )
  assert.equal((await client.tenants.get(name)).name, name)
  assert.ok((await client.tenants.list()).some((x) => x.name === name))
  const updated = await client.tenants.update(name, { quota: { sandboxes: 1, memoryMB: 4096 } })
  assert.deepEqual(updated.quota, { sandboxes: 1, vcpus: 0, memoryMB: 4096, snapshots: 0 })

  const key = await client.apiKeys.create({ tenant: name, name: 'ts-key' })
  assert.ok(key.secret)
  assert.equal(key.key.tenant, name)
  assert.ok((await client.apiKeys.list({ tenant: name })).some((k) => k.id === key.key.id))
  const theirs = new Client({ url: client.url, apiKey: key.secret })
  const own = await theirs.apiKeys.list()
  assert.ok(own.some((k) => k.id === key.key.id && k.current))
  const sb = await Sandbox.create({ image, client: theirs })
  t.after(() => sb.kill().catch(() => {})) // when the test failed before its own kill
  assert.equal((await sb.commands.run('echo tenant')).stdout, 'tenant\n')
  // The quota of one sandbox: the second is refused, and not retried for long.
  const err = await Sandbox.create({ image, client: new Client({ url: client.url, apiKey: key.secret, maxRetries: 0 }) }).then(() => assert.fail('created past the quota'), (e) => e)
  assert.ok(err instanceof ResourceExhaustedError, `${err.constructor.name}: ${err.message}`)
  assert.equal(err.status, 429)
  assert.match(err.message, /quota/)
  // Another tenant's sandbox is not found.
  const mine = await Sandbox.create({ image, client })
  t.after(() => mine.kill())
  await assert.rejects(theirs.sandboxes.get(mine.id), (e) => e instanceof NotFoundError && e.message === `sandbox ${mine.id} not found`)
  await mine.kill()
  await assert.rejects(client.tenants.delete(name), (e) => e instanceof ConflictError)
  assert.equal(await sb.kill(), true)

  await client.apiKeys.revoke(key.key.id)
  await assert.rejects(theirs.info(), (e) => e instanceof UnauthenticatedError && e.status === 401)
  await client.tenants.delete(name)
  await assert.rejects(client.tenants.get(name), (e) => e instanceof NotFoundError)
})

test('SSH keys', async (t) => {
  const name = `ts-ssh-${suffix}`
  const line = sshPublicKey('ts@test')
  const k = await client.sshKeys.add({ name, publicKey: line })
  t.after(() => client.sshKeys.delete(name).catch(() => {}))
  assert.equal(k.name, name)
  assert.equal(k.publicKey, line)
  assert.match(k.fingerprint, /^SHA256:/)
  assert.ok(k.createdAt instanceof Date)
  await assert.rejects(client.sshKeys.add({ publicKey: line }), (e) => e instanceof ConflictError && e.status === 409)
  await assert.rejects(
    client.sshKeys.add({ publicKey: 'not a key' }),
    (e) => e instanceof InvalidArgumentError && e.message === 'public_key is not an SSH public key: want TYPE BASE64 [COMMENT], e.g. ssh-ed25519 AAAAC3... you@host',
  )
  assert.ok((await client.sshKeys.list()).some((x) => x.id === k.id))
  await client.sshKeys.delete(k.id)
  assert.ok(!(await client.sshKeys.list()).some((x) => x.id === k.id))
  await assert.rejects(client.sshKeys.delete(k.id), (e) => e instanceof NotFoundError)
})

test('warm pools', async (t) => {
  const name = `ts-pool-${suffix}`
  const pool = await client.pools.create({ name, image, size: 1, memoryMB: 64, diskMB: 64, cpus: 0.25 })
  t.after(() => client.pools.delete(name).catch(() => {}))
  assert.equal(pool.name, name)
  assert.equal(pool.size, 1)
  await until('the pool to have a spare ready', async () => (await client.pools.get(name)).ready === 1, 60_000)
  assert.ok((await client.pools.list()).some((p) => p.id === pool.id))
  const claimed = await Sandbox.create({ pool: name, client })
  t.after(() => claimed.kill())
  assert.equal(claimed.info.memoryMB, 64)
  assert.equal((await claimed.commands.run('echo pooled')).stdout, 'pooled\n')
  const resized = await client.pools.resize(name, 0)
  assert.equal(resized.size, 0)
  await assert.rejects(client.pools.resize(name, 1000), (e) => e instanceof InvalidArgumentError && e.message === 'size must be between 0 and 256, got 1000')
  await client.pools.delete(name)
  await assert.rejects(client.pools.get(name), (e) => e instanceof NotFoundError)
})
