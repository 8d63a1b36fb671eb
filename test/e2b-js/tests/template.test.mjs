// E2B's template-build API: Template.build from the builder (fromImage with
// copy/runCmd/setEnvs/setWorkdir, and fromDockerfile), Template.exists, tags,
// then Sandbox.create(name) runs in what was built; a failing step is a
// BuildError naming it.
import { describe, it, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Sandbox, Template, BuildError } from 'e2b'
import { killQuietly, RUN_ID, TEMPLATE } from './helpers.mjs'

// Builds on den (a Dockerfile build engine running every step in a
// sandbox) take a while on a small machine.
const BUILD_TIMEOUT = 600_000
const DATA = 'hello from the build context\n'

// name is a template name unique to this run.
const name = (what) => `den-js-${what}-${RUN_ID.slice(0, 8)}`

// deleteTemplate removes a template through the API (the JS SDK has no call
// for it), ignoring errors.
async function deleteTemplate(idOrName) {
  try {
    await fetch(`${process.env.E2B_API_URL}/templates/${encodeURIComponent(idOrName)}`, {
      method: 'DELETE',
      headers: { 'X-API-KEY': process.env.E2B_API_KEY },
    })
  } catch {}
}

const run = async (sbx, cmd) => (await sbx.commands.run(cmd)).stdout

describe(`Template.build on '${TEMPLATE}'`, () => {
  let contextDir
  const made = []
  const templates = []
  before(() => {
    contextDir = mkdtempSync(path.join(tmpdir(), 'den-template-'))
    writeFileSync(path.join(contextDir, 'data.txt'), DATA)
  })
  after(async () => {
    await Promise.all(made.map(killQuietly))
    await Promise.all(templates.map(deleteTemplate))
    rmSync(contextDir, { recursive: true, force: true })
  })

  it('fromImage with copy, runCmd, setEnvs, setWorkdir; then Sandbox.create(name)', { timeout: BUILD_TIMEOUT }, async () => {
    const alias = name('image')
    templates.push(alias)
    const template = Template({ fileContextPath: contextDir })
      .fromImage(TEMPLATE)
      .copy('data.txt', '/opt/data.txt')
      .runCmd('echo built > /opt/built', { user: 'root' })
      .setEnvs({ A: '1' })
      .setWorkdir('/opt')
    const logs = []
    const info = await Template.build(template, alias, { cpuCount: 1, memoryMB: 1024, onBuildLogs: (e) => logs.push(e) })
    assert.equal(info.name, alias)
    assert.ok(info.templateId && info.buildId, `build info ${JSON.stringify(info)}`)
    assert.deepEqual(info.tags, ['default'])
    const text = logs.map((e) => e.message).join('\n')
    assert.match(text, /Uploaded 'data\.txt'/)
    assert.match(text, new RegExp(`Building template ${alias} \\(${info.templateId}\\)`))
    assert.match(text, /Build finished in/)

    assert.equal(await Template.exists(alias), true)
    assert.equal(await Template.exists(alias + '-nope'), false)

    const sbx = await Sandbox.create(alias, { timeoutMs: 300_000, metadata: { denTestRun: RUN_ID, suite: 'template' } })
    made.push(sbx)
    assert.equal(await run(sbx, 'cat /opt/built'), 'built\n')
    assert.equal(await sbx.files.read('/opt/data.txt'), DATA)
    assert.equal(await run(sbx, 'echo "$A"'), '1\n')
    assert.equal(await run(sbx, 'pwd'), '/opt\n')
    assert.equal(await run(sbx, 'whoami'), 'user\n')
    const sinfo = await sbx.getInfo()
    assert.equal(sinfo.templateId, info.templateId)

    // A rebuild of the unchanged template reuses the upload.
    const again = []
    const info2 = await Template.build(template, alias, { onBuildLogs: (e) => again.push(e.message) })
    assert.equal(info2.templateId, info.templateId)
    assert.notEqual(info2.buildId, info.buildId)
    assert.match(again.join('\n'), /Skipping upload of 'data\.txt', already cached/)
  })

  it('tags: assign, list, create by name:tag, remove', { timeout: BUILD_TIMEOUT }, async () => {
    const alias = name('tags')
    templates.push(alias)
    const template = Template().fromImage(TEMPLATE).runCmd('echo tagged > /opt/tagged', { user: 'root' })
    const info = await Template.build(template, `${alias}:v1`)
    assert.deepEqual(info.tags, ['v1'])
    assert.equal(await Template.exists(`${alias}:v1`), true)

    const assigned = await Template.assignTags(`${alias}:v1`, ['stable'])
    assert.deepEqual(assigned.tags, ['stable'])
    assert.equal(assigned.buildId, info.buildId)
    const tags = await Template.getTags(info.templateId)
    assert.deepEqual(tags.map((t) => t.tag).sort(), ['stable', 'v1'])
    for (const t of tags) assert.equal(t.buildId, info.buildId)

    const sbx = await Sandbox.create(`${alias}:stable`, { timeoutMs: 300_000, metadata: { denTestRun: RUN_ID, suite: 'template' } })
    made.push(sbx)
    assert.equal(await run(sbx, 'cat /opt/tagged'), 'tagged\n')

    await Template.removeTags(alias, 'stable')
    assert.deepEqual((await Template.getTags(alias)).map((t) => t.tag), ['v1'])
    await assert.rejects(Sandbox.create(`${alias}:stable`), (err) => {
      assert.equal(err.statusCode, 404, String(err))
      return true
    })
  })

  it('fromDockerfile: FROM, ENV, RUN, WORKDIR as a Dockerfile means them', { timeout: BUILD_TIMEOUT }, async () => {
    const alias = name('dockerfile')
    templates.push(alias)
    const dockerfile = [
      `FROM ${TEMPLATE}`,
      'ENV GREETING=hi',
      'RUN echo "$GREETING from the dockerfile" > /opt/df.txt',
      'WORKDIR /srv',
    ].join('\n')
    await Template.build(Template().fromDockerfile(dockerfile), alias)
    const sbx = await Sandbox.create(alias, { timeoutMs: 300_000, metadata: { denTestRun: RUN_ID, suite: 'template' } })
    made.push(sbx)
    assert.equal(await run(sbx, 'cat /opt/df.txt'), 'hi from the dockerfile\n')
    assert.equal(await run(sbx, 'echo "$GREETING"; pwd; whoami'), 'hi\n/srv\nuser\n')
  })

  it('a failing runCmd is a BuildError naming the step', { timeout: BUILD_TIMEOUT }, async () => {
    const alias = name('fail')
    templates.push(alias)
    const template = Template().fromImage(TEMPLATE).runCmd('echo about to fail; exit 3')
    const logs = []
    await assert.rejects(Template.build(template, alias, { onBuildLogs: (e) => logs.push(e.message) }), (err) => {
      assert.ok(err instanceof BuildError, `want BuildError, got ${err?.constructor?.name}: ${err}`)
      assert.match(err.message, /step 1\/1 RUN echo about to fail; exit 3 failed: .*3/)
      return true
    })
    assert.match(logs.join('\n'), /about to fail/)
    assert.equal(await Template.exists(alias), false)
    await assert.rejects(Sandbox.create(alias), (err) => {
      assert.equal(err.statusCode, 404, String(err))
      return true
    })
  })
})
