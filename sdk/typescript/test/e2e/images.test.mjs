// Images on a real den: list, inspect, tag, remove, prune, export and
// import, push to and pull from a registry on loopback, and builds from a
// Dockerfile.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { InvalidArgumentError, NotFoundError } from '@den/sdk'
import { client, image, sandbox } from './helpers.mjs'
import { startRegistry } from './registry.mjs'

/** Every temporary directory of this file, removed when it ends. */
const tmpRoot = mkdtempSync(join(tmpdir(), 'den-sdk-ts-test-'))
after(() => rmSync(tmpRoot, { recursive: true, force: true }))

const suffix = randomBytes(3).toString('hex')

test('list, get, inspect, tag, remove, prune', async (t) => {
  const list = await client.images.list()
  const bb = list.find((i) => i.name === image)
  assert.ok(bb, `no ${image} in ${list.map((i) => i.name)}`)
  assert.ok(bb.createdAt instanceof Date)
  const got = await client.images.get(image)
  assert.equal(got.id, bb.id)
  const details = await client.images.inspect(image)
  assert.ok(details.layers.length >= 1)
  assert.ok(details.layers[0].diffId.startsWith('sha256:'))
  assert.equal(typeof details.config, 'object')

  const tag = `ts-tagged-${suffix}`
  t.after(() => client.images.remove(tag).catch(() => {}))
  const tagged = await client.images.tag(image, tag)
  assert.equal(tagged.name, tag)
  assert.equal(tagged.id, bb.id)
  await client.images.remove(tag)
  await assert.rejects(client.images.get(tag), (e) => e instanceof NotFoundError)
  const pruned = await client.images.prune()
  assert.equal(typeof pruned.bytes, 'number')
  assert.equal(typeof pruned.layers, 'number')
})

test('export and import round-trip to the same image ID', async (t) => {
  const bb = await client.images.get(image)
  for (const format of ['docker-archive', 'oci']) {
    const name = `ts-imported-${format}-${suffix}`
    t.after(() => client.images.remove(name).catch(() => {}))
    const archive = await client.images.export(image, { format })
    const imported = await client.images.import(archive, { name })
    assert.equal(imported.name, name)
    assert.equal(imported.id, bb.id)
  }
  await assert.rejects(client.images.export('no-such-image'), (e) => e instanceof NotFoundError)
})

test('push to and pull from a registry', async (t) => {
  const reg = await startRegistry()
  t.after(() => reg.close())
  const bb = await client.images.get(image)
  const ref = `${reg.host}/ts/busybox:${suffix}`
  const pushProgress = []
  const digest = await client.images.push(image, ref, { onProgress: (p) => pushProgress.push(p.phase) })
  assert.equal(digest, reg.manifests.get(`ts/busybox@${suffix}`).digest)
  assert.ok(pushProgress.length > 0)

  const pullProgress = []
  const pulled = await client.images.pull(ref, { onProgress: (p) => pullProgress.push(p.phase) })
  t.after(() => client.images.remove(pulled.name).catch(() => {}))
  assert.equal(pulled.id, bb.id)
  assert.equal(pulled.digest, digest)
  assert.ok(pullProgress.length > 0)
  await assert.rejects(client.images.pull(`${reg.host}/ts/missing:1`), (e) => e instanceof NotFoundError)
})

test('build from a Dockerfile with a .dockerignore, build args and logs', async (t) => {
  const dir = mkdtempSync(join(tmpRoot, 'den-sdk-build-'))
  writeFileSync(join(dir, 'Dockerfile'), `FROM ${image}\nARG GREETING=hi\nCOPY . /ctx\nRUN echo "$GREETING from the build" > /greeting\n`)
  writeFileSync(join(dir, '.dockerignore'), 'ignored.txt\nsecret/\n')
  writeFileSync(join(dir, 'kept.txt'), 'kept\n')
  writeFileSync(join(dir, 'ignored.txt'), 'ignored\n')
  mkdirSync(join(dir, 'secret'))
  writeFileSync(join(dir, 'secret', 'key'), 'k')
  const tag = `ts-built-${suffix}`
  t.after(() => client.images.remove(tag).catch(() => {}))
  const logs = []
  const res = await client.images.build(dir, { tag, buildArgs: { GREETING: 'hello' }, onLog: (l) => logs.push(l) })
  assert.deepEqual(res.tags, [tag])
  assert.ok(res.imageId.startsWith('sha256:'))
  assert.equal(res.steps, 3)
  assert.ok(logs.length > 0)
  const sb = await sandbox(t, { image: tag })
  const r = await sb.commands.run('cat /greeting; ls -A /ctx')
  assert.equal(r.stdout, 'hello from the build\n.dockerignore\nDockerfile\nkept.txt\n')

  writeFileSync(join(dir, 'Failing.Dockerfile'), `FROM ${image}\nRUN echo failing; exit 3\n`)
  // A failed step is the build's input at fault (internal/build/errors.go).
  await assert.rejects(
    client.images.build(dir, { dockerfile: 'Failing.Dockerfile' }),
    (e) => e instanceof InvalidArgumentError && e.status === 400 && e.message === 'Failing.Dockerfile:2: RUN echo failing; exit 3: process "/bin/sh -c echo failing; exit 3" did not complete successfully: exit code 3',
  )
})
