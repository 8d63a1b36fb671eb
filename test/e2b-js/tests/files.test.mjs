// The filesystem API: write/read (text, bytes, 100 MB), list with depth,
// getInfo, exists, makeDir, rename, remove and watchDir.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { FileType, FilesystemEventType, FileNotFoundError, NotFoundError } from 'e2b'
import { create, killQuietly, waitFor, sleep, TEMPLATE } from './helpers.mjs'

describe(`files in a '${TEMPLATE}' sandbox`, () => {
  let sbx
  before(async () => {
    sbx = await create({ metadata: { suite: 'files' } })
  })
  after(() => killQuietly(sbx))

  it('write and read text', async () => {
    const info = await sbx.files.write('/home/user/t/hello.txt', 'hello, den\n')
    assert.equal(info.path, '/home/user/t/hello.txt')
    assert.equal(info.name, 'hello.txt')
    assert.equal(await sbx.files.read('/home/user/t/hello.txt'), 'hello, den\n')
    // the sandbox sees the same bytes
    assert.equal((await sbx.commands.run('cat /home/user/t/hello.txt')).stdout, 'hello, den\n')
  })

  it('a relative path resolves in the user home', async () => {
    const info = await sbx.files.write('rel.txt', 'relative')
    assert.equal(info.path, '/home/user/rel.txt')
    assert.equal(await sbx.files.read('/home/user/rel.txt'), 'relative')
  })

  it('write and read bytes (all 256 values)', async () => {
    const bytes = new Uint8Array(256 * 4)
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256
    await sbx.files.write('/tmp/bytes.bin', bytes.buffer)
    const back = await sbx.files.read('/tmp/bytes.bin', { format: 'bytes' })
    assert.ok(back instanceof Uint8Array)
    assert.deepEqual(Buffer.from(back), Buffer.from(bytes))
    const blob = await sbx.files.read('/tmp/bytes.bin', { format: 'blob' })
    assert.equal(blob.size, bytes.length)
  })

  it('write several files at once', async () => {
    const infos = await sbx.files.write([
      { path: '/tmp/multi/a.txt', data: 'A' },
      { path: '/tmp/multi/b.txt', data: 'B' },
    ])
    assert.deepEqual(infos.map((i) => i.path).sort(), ['/tmp/multi/a.txt', '/tmp/multi/b.txt'])
    assert.equal(await sbx.files.read('/tmp/multi/b.txt'), 'B')
  })

  it('files are owned by the user that wrote them', async () => {
    await sbx.files.write('/tmp/own-user.txt', 'u')
    await sbx.files.write('/tmp/own-root.txt', 'r', { user: 'root' })
    assert.equal((await sbx.files.getInfo('/tmp/own-user.txt')).owner, 'user')
    assert.equal((await sbx.files.getInfo('/tmp/own-root.txt')).owner, 'root')
  })

  it('100 MB round trip with matching sha256', { timeout: 600_000 }, async () => {
    const size = 100 * 1024 * 1024
    const data = randomBytes(size)
    const want = createHash('sha256').update(data).digest('hex')
    const info = await sbx.files.write('/tmp/big.bin', data.buffer.slice(data.byteOffset, data.byteOffset + size), { requestTimeoutMs: 300_000 })
    assert.equal(info.path, '/tmp/big.bin')
    assert.equal((await sbx.files.getInfo('/tmp/big.bin')).size, size)
    const inside = await sbx.commands.run('sha256sum /tmp/big.bin', { timeoutMs: 120_000 })
    assert.equal(inside.stdout.split(' ')[0], want, 'hash computed inside the sandbox')
    const back = await sbx.files.read('/tmp/big.bin', { format: 'bytes', requestTimeoutMs: 300_000 })
    assert.equal(back.length, size)
    assert.equal(createHash('sha256').update(back).digest('hex'), want, 'hash of the bytes read back')
    await sbx.files.remove('/tmp/big.bin')
  })

  it('list with depth', async () => {
    await sbx.files.makeDir('/tmp/tree/a/b')
    await sbx.files.write('/tmp/tree/a/b/deep.txt', 'deep')
    await sbx.files.write('/tmp/tree/top.txt', 'top')

    const one = await sbx.files.list('/tmp/tree')
    assert.deepEqual(one.map((e) => e.name).sort(), ['a', 'top.txt'])
    const a = one.find((e) => e.name === 'a')
    assert.equal(a.type, FileType.DIR)
    assert.equal(a.path, '/tmp/tree/a')
    const top = one.find((e) => e.name === 'top.txt')
    assert.equal(top.type, FileType.FILE)
    assert.equal(top.size, 3)

    const deep = await sbx.files.list('/tmp/tree', { depth: 3 })
    assert.deepEqual(deep.map((e) => e.path).sort(), ['/tmp/tree/a', '/tmp/tree/a/b', '/tmp/tree/a/b/deep.txt', '/tmp/tree/top.txt'])
    const two = await sbx.files.list('/tmp/tree', { depth: 2 })
    assert.deepEqual(two.map((e) => e.path).sort(), ['/tmp/tree/a', '/tmp/tree/a/b', '/tmp/tree/top.txt'])
  })

  it('getInfo of a file and a directory', async () => {
    await sbx.files.write('/tmp/info.txt', '12345')
    await sbx.commands.run('chmod 640 /tmp/info.txt')
    const f = await sbx.files.getInfo('/tmp/info.txt')
    assert.equal(f.name, 'info.txt')
    assert.equal(f.path, '/tmp/info.txt')
    assert.equal(f.type, FileType.FILE)
    assert.equal(f.size, 5)
    assert.equal(f.permissions, '-rw-r-----')
    assert.equal(f.mode & 0o777, 0o640)
    assert.equal(f.owner, 'user')
    assert.ok(f.modifiedTime instanceof Date && Math.abs(Date.now() - f.modifiedTime.getTime()) < 10 * 60_000, `modifiedTime ${f.modifiedTime}`)
    const d = await sbx.files.getInfo('/tmp')
    assert.equal(d.type, FileType.DIR)
    await assert.rejects(sbx.files.getInfo('/tmp/no-such-file'), (err) => {
      assert.ok(err instanceof FileNotFoundError || err instanceof NotFoundError, `got ${err?.constructor?.name}: ${err}`)
      return true
    })
  })

  it('read of a missing file throws FileNotFoundError', async () => {
    await assert.rejects(sbx.files.read('/tmp/no-such-file'), (err) => {
      assert.ok(err instanceof FileNotFoundError || err instanceof NotFoundError, `got ${err?.constructor?.name}: ${err}`)
      return true
    })
  })

  it('exists', async () => {
    await sbx.files.write('/tmp/exists.txt', 'x')
    assert.equal(await sbx.files.exists('/tmp/exists.txt'), true)
    assert.equal(await sbx.files.exists('/tmp'), true)
    assert.equal(await sbx.files.exists('/tmp/not-there'), false)
  })

  it('makeDir creates parents and reports whether it created', async () => {
    assert.equal(await sbx.files.makeDir('/tmp/mk/x/y'), true)
    assert.equal(await sbx.files.makeDir('/tmp/mk/x/y'), false)
    assert.equal((await sbx.files.getInfo('/tmp/mk/x/y')).type, FileType.DIR)
  })

  it('rename a file and a directory', async () => {
    await sbx.files.write('/tmp/mv/old.txt', 'moved')
    const info = await sbx.files.rename('/tmp/mv/old.txt', '/tmp/mv/new.txt')
    assert.equal(info.path, '/tmp/mv/new.txt')
    assert.equal(info.name, 'new.txt')
    assert.equal(await sbx.files.exists('/tmp/mv/old.txt'), false)
    assert.equal(await sbx.files.read('/tmp/mv/new.txt'), 'moved')
    const dir = await sbx.files.rename('/tmp/mv', '/tmp/mv2')
    assert.equal(dir.type, FileType.DIR)
    assert.equal(await sbx.files.read('/tmp/mv2/new.txt'), 'moved')
  })

  it('remove a file and a directory tree', async () => {
    await sbx.files.write('/tmp/rm/sub/f.txt', 'x')
    await sbx.files.write('/tmp/rm/g.txt', 'y')
    await sbx.files.remove('/tmp/rm/g.txt')
    assert.equal(await sbx.files.exists('/tmp/rm/g.txt'), false)
    await sbx.files.remove('/tmp/rm')
    assert.equal(await sbx.files.exists('/tmp/rm'), false)
  })

  it('watchDir reports create, write, rename and remove', async () => {
    await sbx.files.makeDir('/tmp/watched')
    const events = []
    const handle = await sbx.files.watchDir('/tmp/watched', (e) => { events.push(e) }, { timeoutMs: 120_000 })
    try {
      await sleep(200)
      await sbx.files.write('/tmp/watched/w.txt', 'one')
      await sbx.commands.run('echo more >> /tmp/watched/w.txt')
      await sbx.files.rename('/tmp/watched/w.txt', '/tmp/watched/w2.txt')
      await sbx.files.remove('/tmp/watched/w2.txt')
      const has = (name, type) => events.some((e) => e.name === name && e.type === type)
      await waitFor(() => has('w.txt', FilesystemEventType.CREATE), `create event (got ${JSON.stringify(events)})`)
      await waitFor(() => has('w.txt', FilesystemEventType.WRITE), `write event (got ${JSON.stringify(events)})`)
      await waitFor(() => has('w.txt', FilesystemEventType.RENAME), `rename event (got ${JSON.stringify(events)})`)
      await waitFor(() => has('w2.txt', FilesystemEventType.REMOVE), `remove event (got ${JSON.stringify(events)})`)
    } finally {
      await handle.stop()
    }
  })

  it('watchDir recursive sees nested changes', async () => {
    await sbx.files.makeDir('/tmp/rwatch/inner')
    const events = []
    const handle = await sbx.files.watchDir('/tmp/rwatch', (e) => { events.push(e) }, { recursive: true, timeoutMs: 120_000 })
    try {
      await sleep(200)
      await sbx.files.write('/tmp/rwatch/inner/n.txt', 'nested')
      await waitFor(() => events.some((e) => e.name === 'inner/n.txt' && e.type === FilesystemEventType.CREATE), `nested create (got ${JSON.stringify(events)})`)
    } finally {
      await handle.stop()
    }
  })

  it('watchDir on a missing directory fails', async () => {
    await assert.rejects(sbx.files.watchDir('/tmp/no-such-dir', () => {}))
  })
})
