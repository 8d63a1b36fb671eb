// Files of a real sandbox: bytes and text, streams, listings, stat, make,
// move, remove, users, watch, and directories both ways.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, statSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, PermissionDeniedError } from '@den/sdk'
import { collect, sandbox } from './helpers.mjs'

/** Every temporary directory of this file, removed when it ends. */
const tmpRoot = mkdtempSync(join(tmpdir(), 'den-sdk-ts-test-'))
after(() => rmSync(tmpRoot, { recursive: true, force: true }))

test('files', async (t) => {
  const sb = await sandbox(t)

  await t.test('write and read bytes, text and streams', async () => {
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff)
    const info = await sb.files.write('/tmp/data/bytes.bin', bytes)
    assert.deepEqual(info, { path: '/tmp/data/bytes.bin', name: 'bytes.bin', type: 'file' })
    assert.deepEqual(await sb.files.read('/tmp/data/bytes.bin'), bytes)
    await sb.files.write('/tmp/data/text.txt', 'héllo\n')
    assert.equal(await sb.files.readText('/tmp/data/text.txt'), 'héllo\n')
    async function* parts() {
      for (let i = 0; i < 10; i++) yield new TextEncoder().encode(`line ${i}\n`)
    }
    await sb.files.write('/tmp/data/stream.txt', parts())
    const streamed = await collect(await sb.files.readStream('/tmp/data/stream.txt'))
    assert.equal(streamed.toString(), Array.from({ length: 10 }, (_, i) => `line ${i}\n`).join(''))
    await sb.files.write('/tmp/data/blob.txt', new Blob(['from a blob']))
    assert.equal((await sb.commands.run('cat /tmp/data/blob.txt')).stdout, 'from a blob')
  })

  await t.test('list, stat, exists, makeDir, move, remove', async () => {
    await sb.files.makeDir('/tmp/tree/a/b')
    await sb.files.write('/tmp/tree/a/f.txt', 'f')
    const top = await sb.files.list('/tmp/tree')
    assert.deepEqual(top.map((e) => [e.name, e.type, e.path]), [['a', 'dir', '/tmp/tree/a']])
    const deep = await sb.files.list('/tmp/tree', { depth: 3 })
    assert.deepEqual(deep.map((e) => e.path).sort(), ['/tmp/tree/a', '/tmp/tree/a/b', '/tmp/tree/a/f.txt'])
    const st = await sb.files.stat('/tmp/tree/a/f.txt')
    assert.equal(st.type, 'file')
    assert.equal(st.size, 1)
    assert.equal(st.permissions, '-rw-r--r--')
    assert.equal(st.owner, 'root')
    assert.ok(st.modifiedTime instanceof Date && Math.abs(st.modifiedTime.getTime() - Date.now()) < 600_000)
    await sb.commands.run('ln -s f.txt /tmp/tree/a/ln')
    const ln = await sb.files.stat('/tmp/tree/a/ln')
    assert.equal(ln.type, 'symlink')
    assert.equal(ln.symlinkTarget, 'f.txt')
    assert.equal(await sb.files.exists('/tmp/tree/a/f.txt'), true)
    assert.equal(await sb.files.exists('/tmp/tree/nope'), false)
    await assert.rejects(sb.files.makeDir('/tmp/tree/a'), (e) => e instanceof AlreadyExistsError && e.message === '/tmp/tree/a already exists')
    const moved = await sb.files.move('/tmp/tree/a/f.txt', '/tmp/tree/g.txt')
    assert.equal(moved.path, '/tmp/tree/g.txt')
    assert.equal(await sb.files.readText('/tmp/tree/g.txt'), 'f')
    await sb.files.remove('/tmp/tree/a')
    assert.deepEqual((await sb.files.list('/tmp/tree')).map((e) => e.name), ['g.txt'])
  })

  await t.test('errors map to their classes', async () => {
    await assert.rejects(sb.files.read('/tmp/none'), (e) => e instanceof NotFoundError && e.status === 404 && e.message.endsWith('/tmp/none: no such file or directory'))
    await assert.rejects(sb.files.readText('/tmp'), (e) => e instanceof InvalidArgumentError && e.message === '/tmp is not a file')
    await assert.rejects(sb.files.stat('/tmp/none'), (e) => e instanceof NotFoundError)
    await assert.rejects(sb.files.list('/nope'), (e) => e instanceof NotFoundError && e.message === 'list: stat /nope: no such file or directory')
    await assert.rejects(sb.files.write('/proc/x', 'x'), (e) => e instanceof PermissionDeniedError && e.status === 403 && e.message.startsWith('create /proc/x: '))
  })

  await t.test('files act as the handle user', async () => {
    const u = sb.asUser('user')
    const info = await u.files.write('notes.txt', 'mine')
    assert.equal(info.path, '/home/user/notes.txt')
    assert.equal((await u.files.stat('notes.txt')).owner, 'user')
    assert.equal((await sb.files.stat('/home/user/notes.txt', { user: 'user' })).owner, 'user')
  })

  await t.test('watch reports changes as they happen', async () => {
    await sb.files.makeDir('/tmp/watched')
    // The signal bounds the wait: an event that never comes fails the
    // assertion below instead of hanging the test.
    const w = await sb.files.watch('/tmp/watched', { recursive: true, signal: AbortSignal.timeout(20_000) })
    await sb.files.write('/tmp/watched/new.txt', 'x')
    const seen = []
    for await (const ev of w) {
      seen.push(`${ev.op} ${ev.name}`)
      // The guest writes a temporary file and renames it: new.txt appears by a create.
      if (ev.name === 'new.txt' && ev.op === 'create') {
        assert.equal(ev.entry?.path, '/tmp/watched/new.txt')
        break
      }
    }
    assert.ok(seen.includes('create new.txt'), seen.join(', '))
    w.close()
    await assert.rejects(sb.files.watch('/tmp/not-there'), (e) => e instanceof NotFoundError)
  })

  await t.test('uploadDir and downloadDir move whole directories', async () => {
    const src = mkdtempSync(join(tmpRoot, 'den-sdk-up-'))
    mkdirSync(join(src, 'nested', 'deeper'), { recursive: true })
    writeFileSync(join(src, 'top.txt'), 'top\n')
    writeFileSync(join(src, 'nested', 'deeper', 'big.bin'), Buffer.alloc(1 << 20, 3))
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho ran\n', { mode: 0o755 })
    symlinkSync('top.txt', join(src, 'link'))
    await sb.files.uploadDir(src, '/tmp/up/dir')
    const r = await sb.commands.run('cd /tmp/up/dir && cat top.txt && ./run.sh && readlink link && wc -c < nested/deeper/big.bin')
    assert.equal(r.stdout, 'top\nran\ntop.txt\n1048576\n', r.stderr)
    assert.equal((await sb.commands.run('ls /tmp/.den-upload-* 2>/dev/null | wc -l')).stdout.trim(), '0', 'the temporary archive is removed')

    const dst = mkdtempSync(join(tmpRoot, 'den-sdk-down-'))
    await sb.files.downloadDir('/tmp/up/dir', join(dst, 'copy'))
    assert.equal(readFileSync(join(dst, 'copy', 'top.txt'), 'utf8'), 'top\n')
    assert.deepEqual(readFileSync(join(dst, 'copy', 'nested', 'deeper', 'big.bin')), Buffer.alloc(1 << 20, 3))
    assert.equal(statSync(join(dst, 'copy', 'run.sh')).mode & 0o777, 0o755)
    assert.equal(readlinkSync(join(dst, 'copy', 'link')), 'top.txt')

    await assert.rejects(sb.files.downloadDir('/tmp/none', join(dst, 'x')), (e) => e.name === 'DenError' && e.message.startsWith('download /tmp/none: tar in the sandbox failed (exit status 1): '))
  })
})
