// The SDK against api/openapi.yaml: every /v1 operation has an SDK method
// (an explicit table, checked both ways), and the wire conversion rules
// hold for every field of the spec. Needs no server.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { parse } from 'yaml'
import { Client } from '@den/sdk'
import { camel, specPath } from '../../scripts/gen-types.mjs'
import { ERROR_CODES } from '../../dist/errors.js'
import { MAP_FIELDS, isDateField, toCamel, toSnake } from '../../dist/wire.js'

const spec = parse(readFileSync(specPath, 'utf8'))

/**
 * operationId -> the SDK method(s) that call it, as paths from `client` (a
 * Client) or `sandbox` (a Sandbox handle).
 */
export const methods = {
  getInfo: 'client.info',
  listNodes: 'client.nodes.list',
  getNode: 'client.nodes.get',
  drainNode: 'client.nodes.drain',
  undrainNode: 'client.nodes.undrain',
  listJoinTokens: 'client.tokens.list',
  createJoinToken: 'client.tokens.create',
  deleteJoinToken: 'client.tokens.delete',
  listClusterMembers: 'client.cluster.members',
  getClusterCA: 'client.cluster.ca',
  rotateClusterCA: 'client.cluster.rotateCA',
  createSandbox: ['client.sandboxes.create', 'Sandbox.create'],
  listSandboxes: ['client.sandboxes.list', 'client.sandboxes.listPage'],
  getSandbox: ['client.sandboxes.get', 'client.sandboxes.getInfo', 'sandbox.refresh', 'Sandbox.connect'],
  deleteSandbox: ['client.sandboxes.delete', 'sandbox.kill'],
  setSandboxTimeout: ['client.sandboxes.setTimeout', 'sandbox.setTimeout'],
  suspendSandbox: ['client.sandboxes.suspend', 'sandbox.suspend'],
  resumeSandbox: ['client.sandboxes.resume', 'sandbox.resume'],
  getSandboxNetwork: ['client.sandboxes.getNetwork', 'sandbox.getNetwork'],
  setSandboxNetwork: ['client.sandboxes.setNetwork', 'sandbox.setNetwork'],
  setSandboxPort: ['client.sandboxes.setPort', 'sandbox.setPortPublic'],
  forkSandbox: ['client.sandboxes.fork', 'sandbox.fork'],
  listSnapshots: 'client.snapshots.list',
  createSnapshot: ['client.snapshots.create', 'sandbox.snapshot'],
  snapshotUsage: 'client.snapshots.usage',
  pruneSnapshots: 'client.snapshots.prune',
  getSnapshot: 'client.snapshots.get',
  deleteSnapshot: 'client.snapshots.delete',
  guestProtocol: [
    'sandbox.commands.run',
    'sandbox.commands.stream',
    'sandbox.commands.start',
    'sandbox.commands.connect',
    'sandbox.commands.list',
    'sandbox.commands.signal',
    'sandbox.commands.kill',
    'sandbox.commands.sendInput',
    'sandbox.commands.closeStdin',
    'sandbox.pty.create',
    'sandbox.pty.resize',
    'sandbox.pty.sendInput',
    'sandbox.files.read',
    'sandbox.files.readText',
    'sandbox.files.readStream',
    'sandbox.files.write',
    'sandbox.files.list',
    'sandbox.files.stat',
    'sandbox.files.exists',
    'sandbox.files.makeDir',
    'sandbox.files.remove',
    'sandbox.files.move',
    'sandbox.files.watch',
    'sandbox.files.uploadDir',
    'sandbox.files.downloadDir',
  ],
  listPools: 'client.pools.list',
  createPool: 'client.pools.create',
  getPool: 'client.pools.get',
  resizePool: 'client.pools.resize',
  deletePool: 'client.pools.delete',
  listSSHKeys: 'client.sshKeys.list',
  addSSHKey: 'client.sshKeys.add',
  deleteSSHKey: 'client.sshKeys.delete',
  listTenants: 'client.tenants.list',
  createTenant: 'client.tenants.create',
  getTenant: 'client.tenants.get',
  updateTenant: 'client.tenants.update',
  deleteTenant: 'client.tenants.delete',
  listAPIKeys: 'client.apiKeys.list',
  createAPIKey: 'client.apiKeys.create',
  revokeAPIKey: 'client.apiKeys.revoke',
  listImages: 'client.images.list',
  importImage: 'client.images.import',
  getImage: ['client.images.get', 'client.images.inspect'],
  removeImage: 'client.images.remove',
  tagImage: 'client.images.tag',
  exportImage: 'client.images.export',
  pullImage: 'client.images.pull',
  pushImage: 'client.images.push',
  buildImage: 'client.images.build',
  pruneImages: 'client.images.prune',
}

/** v1Operations lists the operationIds of the spec's /v1 paths. */
function v1Operations() {
  const ops = []
  for (const [path, item] of Object.entries(spec.paths)) {
    if (!path.startsWith('/v1/')) continue
    for (const op of Object.values(item)) if (op && typeof op === 'object' && op.operationId) ops.push(op.operationId)
  }
  return ops
}

/** resolveMethod follows a path like "client.sandboxes.create" and returns what it names. */
function resolveMethod(path) {
  const client = new Client({ url: 'http://127.0.0.1:9', apiKey: 'k' })
  const roots = { client, sandbox: client.sandbox('sandbox-id'), Sandbox: client.sandbox('x').constructor }
  const [root, ...rest] = path.split('.')
  let v = roots[root]
  assert.ok(v, `${path}: unknown root ${root}`)
  for (const name of rest) v = v?.[name]
  return v
}

test('every /v1 operation of api/openapi.yaml has an SDK method', () => {
  const ops = v1Operations()
  assert.equal(ops.length, new Set(ops).size, 'operationIds are unique')
  const missing = ops.filter((op) => !(op in methods))
  assert.deepEqual(missing, [], `operations without an entry in the table of test/unit/spec.test.mjs: ${missing.join(', ')}`)
  const stale = Object.keys(methods).filter((op) => !ops.includes(op))
  assert.deepEqual(stale, [], `table entries for operations the spec does not have: ${stale.join(', ')}`)
})

test('every method in the table exists', () => {
  const broken = []
  for (const [op, paths] of Object.entries(methods)) {
    for (const p of [paths].flat()) if (typeof resolveMethod(p) !== 'function') broken.push(`${op} -> ${p}`)
  }
  assert.deepEqual(broken, [], `table entries naming no method: ${broken.join(', ')}`)
})

/** properties yields [name, schema] of every property in the spec, nested ones included. */
function* properties(s, seen = new Set()) {
  if (!s || typeof s !== 'object' || seen.has(s)) return
  seen.add(s)
  if (s.properties) {
    for (const [name, p] of Object.entries(s.properties)) {
      yield [name, p]
      yield* properties(p, seen)
    }
  }
  for (const k of ['items', 'additionalProperties']) yield* properties(s[k], seen)
  for (const k of ['allOf', 'oneOf', 'anyOf']) for (const x of s[k] ?? []) yield* properties(x, seen)
  if (!s.properties && !s.type) for (const v of Object.values(s)) yield* properties(v, seen)
}

const allProps = [...properties(spec)]

test('wire names convert both ways for every field of the spec', () => {
  assert.ok(allProps.length > 150, `found only ${allProps.length} properties in the spec`)
  const bad = []
  for (const [name] of allProps) {
    if (toSnake(toCamel(name)) !== name) bad.push(`${name} -> ${toCamel(name)} -> ${toSnake(toCamel(name))}`)
    if (camel(name) !== toCamel(name)) bad.push(`${name}: gen-types says ${camel(name)}, wire.ts ${toCamel(name)}`)
  }
  assert.deepEqual(bad, [])
})

test('map fields of the spec keep their keys (MAP_FIELDS)', () => {
  const maps = new Set(allProps.filter(([, p]) => p.additionalProperties).map(([n]) => n))
  const missing = [...maps].filter((n) => !MAP_FIELDS.has(n))
  assert.deepEqual(missing, [], `map-valued fields missing from MAP_FIELDS in src/wire.ts: ${missing.join(', ')}`)
})

test('date-time fields of the spec become Dates (isDateField)', () => {
  const dates = allProps.filter(([, p]) => p.format === 'date-time').map(([n]) => n)
  assert.ok(dates.length > 10)
  assert.deepEqual(dates.filter((n) => !isDateField(n)), [])
  const notDates = allProps.filter(([n, p]) => isDateField(n) && p.format !== 'date-time').map(([n]) => n)
  assert.deepEqual(notDates, [], 'fields named like dates that are not date-time')
})

test('every error code of the spec has an error class', () => {
  const codes = spec.components.schemas.Error.properties.code.enum
  assert.deepEqual(codes.filter((c) => !ERROR_CODES.includes(c)), [])
})
