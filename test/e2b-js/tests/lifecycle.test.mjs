// The control plane: create with metadata/envs, getInfo, Sandbox.list with a
// metadata filter and pagination, setTimeout (the sandbox really dies), kill,
// and the error classes for an unknown sandbox, an unknown template and a bad key.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Sandbox, SandboxNotFoundError, NotFoundError, AuthenticationError, SandboxError } from 'e2b'
import { create, killQuietly, waitFor, TEMPLATE, RUN_ID } from './helpers.mjs'

const BAD_KEY = 'e2b_' + '0'.repeat(40)
const UNKNOWN_ID = 'i' + randomUUID().replaceAll('-', '').slice(0, 19)

const isNotFound = (err) => {
  assert.ok(err instanceof SandboxNotFoundError && err instanceof NotFoundError, `want SandboxNotFoundError, got ${err?.constructor?.name}: ${err}`)
  return true
}
const isAuth = (err) => {
  assert.ok(err instanceof AuthenticationError, `want AuthenticationError, got ${err?.constructor?.name}: ${err}`)
  return true
}

describe(`sandbox lifecycle with template '${TEMPLATE}'`, () => {
  const made = []
  after(async () => { await Promise.all(made.map(killQuietly)) })

  it('create with metadata and envs; getInfo reports them', async () => {
    const before = Date.now()
    const sbx = await create({ metadata: { suite: 'lifecycle', k: 'v with space' }, envs: { HELLO: 'world' }, timeoutMs: 600_000 })
    made.push(sbx)
    assert.match(sbx.sandboxId, /^[A-Za-z0-9-]+$/)
    assert.equal((await sbx.commands.run('echo $HELLO')).stdout, 'world\n')
    assert.equal(await sbx.isRunning(), true)

    for (const info of [await sbx.getInfo(), await Sandbox.getInfo(sbx.sandboxId)]) {
      assert.equal(info.sandboxId, sbx.sandboxId)
      assert.deepEqual(info.metadata, { denTestRun: RUN_ID, suite: 'lifecycle', k: 'v with space' })
      assert.equal(info.state, 'running')
      assert.ok(info.templateId, 'templateId set')
      assert.ok(info.startedAt instanceof Date && !isNaN(info.startedAt))
      assert.ok(info.startedAt.getTime() >= before - 60_000 && info.startedAt.getTime() <= Date.now() + 60_000, `startedAt ${info.startedAt}`)
      const left = info.endAt.getTime() - Date.now()
      assert.ok(left > 500_000 && left <= 660_000, `endAt ${info.endAt} is ${left} ms away, want ~600 s`)
      assert.ok(info.cpuCount > 0, `cpuCount ${info.cpuCount}`)
      assert.ok(info.memoryMB > 0, `memoryMB ${info.memoryMB}`)
      assert.match(info.envdVersion, /^\d+\.\d+\.\d+/)
    }
  })

  it('Sandbox.connect returns a working handle to a running sandbox', async () => {
    const sbx = await create({ metadata: { suite: 'connect' } })
    made.push(sbx)
    await sbx.files.write('/tmp/marker', 'same sandbox')
    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal(await again.files.read('/tmp/marker'), 'same sandbox')
  })

  it('Sandbox.list filters by metadata and paginates', async () => {
    const tag = randomUUID()
    const sbxs = await Promise.all([0, 1, 2].map((i) => create({ metadata: { listTag: tag, idx: String(i) } })))
    made.push(...sbxs)
    const want = sbxs.map((s) => s.sandboxId).sort()

    const all = await Sandbox.list({ query: { metadata: { listTag: tag } } }).nextItems()
    assert.deepEqual(all.map((s) => s.sandboxId).sort(), want)
    for (const s of all) {
      assert.equal(s.state, 'running')
      assert.equal(s.metadata.listTag, tag)
      assert.ok(s.startedAt instanceof Date && !isNaN(s.startedAt))
    }

    const one = await Sandbox.list({ query: { metadata: { listTag: tag, idx: '1' } } }).nextItems()
    assert.deepEqual(one.map((s) => s.sandboxId), [sbxs[1].sandboxId], 'two metadata keys are ANDed')

    const pager = Sandbox.list({ query: { metadata: { listTag: tag } }, limit: 2 })
    const seen = []
    const pages = []
    while (pager.hasNext) {
      const items = await pager.nextItems()
      pages.push(items.length)
      seen.push(...items.map((s) => s.sandboxId))
      assert.ok(pages.length <= 3, `too many pages: ${pages}`)
    }
    assert.deepEqual(pages, [2, 1])
    assert.deepEqual(seen.sort(), want)

    const none = await Sandbox.list({ query: { metadata: { listTag: randomUUID() } } }).nextItems()
    assert.deepEqual(none, [])

    // without a filter our sandboxes are among the running ones
    const everything = []
    const p2 = Sandbox.list({ limit: 100 })
    while (p2.hasNext) everything.push(...(await p2.nextItems()))
    for (const id of want) assert.ok(everything.some((s) => s.sandboxId === id), `${id} missing from unfiltered list`)
  })

  it('setTimeout: the sandbox dies when the new timeout passes', { timeout: 120_000 }, async () => {
    const sbx = await create({ metadata: { suite: 'timeout' }, timeoutMs: 600_000 })
    made.push(sbx)
    await sbx.setTimeout(4_000)
    const info = await sbx.getInfo()
    const left = info.endAt.getTime() - Date.now()
    assert.ok(left <= 6_000, `endAt ${info.endAt} is ${left} ms away after setTimeout(4000)`)

    await waitFor(async () => {
      try {
        await Sandbox.connect(sbx.sandboxId)
        return false
      } catch (err) {
        return isNotFound(err)
      }
    }, 'Sandbox.connect to fail with SandboxNotFoundError after the timeout', 60_000, 500)
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), isNotFound)
    // Once the API says it is gone, its envd must stop answering too (one
    // full-suite run saw isRunning() still true right after connect's 404).
    await waitFor(async () => (await sbx.isRunning()) === false, 'isRunning() to be false after the timeout', 5_000, 200)
    await assert.rejects(sbx.commands.run('true', { requestTimeoutMs: 10_000 }))
    assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  })

  it('setTimeout can extend a short timeout', { timeout: 60_000 }, async () => {
    const sbx = await create({ metadata: { suite: 'extend' }, timeoutMs: 5_000 })
    made.push(sbx)
    await sbx.setTimeout(120_000)
    await new Promise((r) => setTimeout(r, 8_000))
    assert.equal(await sbx.isRunning(), true)
    assert.equal((await sbx.commands.run('echo alive')).stdout, 'alive\n')
  })

  it('kill: instance and static, then it is gone', async () => {
    const sbx = await create({ metadata: { suite: 'kill' } })
    assert.equal(await sbx.kill(), true)
    assert.equal(await Sandbox.kill(sbx.sandboxId), false)
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), isNotFound)
    await assert.rejects(Sandbox.connect(sbx.sandboxId), isNotFound)
    assert.equal(await sbx.isRunning(), false)
    const listed = await Sandbox.list({ query: { metadata: { denTestRun: RUN_ID, suite: 'kill' } } }).nextItems()
    assert.deepEqual(listed, [])
  })

  it('an unknown sandbox: SandboxNotFoundError / false', async () => {
    await assert.rejects(Sandbox.connect(UNKNOWN_ID), isNotFound)
    await assert.rejects(Sandbox.getInfo(UNKNOWN_ID), isNotFound)
    await assert.rejects(Sandbox.setTimeout(UNKNOWN_ID, 60_000), isNotFound)
    assert.equal(await Sandbox.kill(UNKNOWN_ID), false)
  })

  it('an unknown template: a 404 SandboxError', async () => {
    await assert.rejects(Sandbox.create('no-such-template-' + randomUUID().slice(0, 8)), (err) => {
      assert.ok(err instanceof SandboxError, `got ${err?.constructor?.name}: ${err}`)
      assert.equal(err.statusCode, 404, String(err))
      return true
    })
  })

  it('a bad API key: AuthenticationError', async () => {
    await assert.rejects(Sandbox.create(TEMPLATE, { apiKey: BAD_KEY }), isAuth)
    await assert.rejects(Sandbox.list({ apiKey: BAD_KEY }).nextItems(), isAuth)
    await assert.rejects(Sandbox.getInfo(UNKNOWN_ID, { apiKey: BAD_KEY }), isAuth)
    await assert.rejects(Sandbox.kill(UNKNOWN_ID, { apiKey: BAD_KEY }), isAuth)
    const sbx = await create({ metadata: { suite: 'badkey' } })
    made.push(sbx)
    await assert.rejects(Sandbox.connect(sbx.sandboxId, { apiKey: BAD_KEY }), isAuth)
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, { apiKey: BAD_KEY }), isAuth)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'running', 'a bad key must not affect the sandbox')
  })
})
