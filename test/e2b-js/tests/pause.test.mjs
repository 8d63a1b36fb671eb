// Durable sandboxes through the SDK: pause (den's suspend) keeps memory,
// processes and files; connect resumes them; a second pause is the SDK's
// "already paused" (false, from the API's 409); lifecycle.onTimeout
// 'pause' (the API's autoPause) pauses a sandbox at its timeout instead of
// killing it.
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
import { create, killQuietly, waitFor, sleep, RUN_ID } from './helpers.mjs'

// COUNTER rewrites /tmp/count atomically every 50 ms; a restarted
// process would count again from 1.
const COUNTER = 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count; sleep 0.05; done'

const count = async (sbx) => Number((await sbx.files.read('/tmp/count')).trim())

// startCounter starts the loop in the background, waits until it has
// counted a while and returns its pid. The handle's stream is dropped
// (a pause ends it); the process keeps running.
async function startCounter(sbx) {
  const h = await sbx.commands.run(COUNTER, { background: true })
  await h.disconnect()
  await waitFor(async () => (await count(sbx)) >= 20, 'the counter to reach 20')
  return h.pid
}

const paused = async (id) => (await Sandbox.getInfo(id)).state === 'paused'

describe('pause and resume (den suspend)', () => {
  const made = []
  after(async () => { await Promise.all(made.map(killQuietly)) })

  it('pause keeps files and processes; connect resumes them', { timeout: 180_000 }, async () => {
    const sbx = await create({ metadata: { suite: 'pause' } })
    made.push(sbx)
    const pid = await startCounter(sbx)
    await sbx.files.write('/home/user/kept.txt', 'kept across pause')
    const before = await count(sbx)

    assert.equal(await sbx.pause(), true)
    assert.equal((await sbx.getInfo()).state, 'paused')
    const listed = await Sandbox.list({ query: { state: ['paused'], metadata: { denTestRun: RUN_ID, suite: 'pause' } } }).nextItems()
    assert.deepEqual(listed.map((s) => [s.sandboxId, s.state]), [[sbx.sandboxId, 'paused']])
    const running = await Sandbox.list({ query: { state: ['running'], metadata: { denTestRun: RUN_ID, suite: 'pause' } } }).nextItems()
    assert.deepEqual(running, [], 'a paused sandbox is not listed as running')

    // A second pause: the API answers 409, which the SDK reports as false.
    assert.equal(await sbx.pause(), false)
    assert.equal(await Sandbox.pause(sbx.sandboxId), false)

    const again = await Sandbox.connect(sbx.sandboxId)
    assert.equal(again.sandboxId, sbx.sandboxId)
    assert.equal((await again.getInfo()).state, 'running')
    assert.equal(await again.files.read('/home/user/kept.txt'), 'kept across pause')
    const after1 = await count(again)
    assert.ok(after1 >= before, `the counter went back from ${before} to ${after1}: the process restarted`)
    await waitFor(async () => (await count(again)) > after1, 'the counter to continue after the resume')
    const procs = await again.commands.list()
    assert.ok(procs.some((p) => p.pid === pid), `counter pid ${pid} missing from commands.list: ${JSON.stringify(procs)}`)
    assert.equal((await again.commands.run('echo resumed')).stdout, 'resumed\n')
    // the old handle works too: the sandbox ID and token did not change
    assert.equal((await sbx.commands.run('cat /home/user/kept.txt')).stdout, 'kept across pause')
  })

  it('traffic to a paused sandbox resumes it', { timeout: 180_000 }, async () => {
    const sbx = await create({ metadata: { suite: 'pause-traffic' } })
    made.push(sbx)
    await sbx.files.write('/tmp/kept.txt', 'still here')
    assert.equal(await Sandbox.pause(sbx.sandboxId), true)
    assert.equal(await paused(sbx.sandboxId), true)
    assert.equal(await sbx.files.read('/tmp/kept.txt'), 'still here')
    assert.equal((await sbx.getInfo()).state, 'running')
  })

  it("lifecycle onTimeout 'pause': the timeout pauses, connect resumes", { timeout: 180_000 }, async () => {
    const sbx = await create({ metadata: { suite: 'autopause' }, timeoutMs: 5_000, lifecycle: { onTimeout: 'pause' } })
    made.push(sbx)
    await sbx.files.write('/tmp/kept.txt', 'auto-paused')
    await waitFor(() => paused(sbx.sandboxId), 'the timeout to pause the sandbox', 60_000, 250)
    // still paused a moment later: the timer did not kill it
    await sleep(1_000)
    assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused')

    const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 120_000 })
    assert.equal((await again.getInfo()).state, 'running')
    assert.equal(await again.files.read('/tmp/kept.txt'), 'auto-paused')
    assert.equal((await again.commands.run('echo back')).stdout, 'back\n')
  })
})
