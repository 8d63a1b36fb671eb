// The tar writer and reader, against each other and against the system's
// tar (GNU or busybox), which must read what the SDK writes and write what
// it reads.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, lstatSync, statSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { dirEntries, readTar, tarStream } from '../../dist/tar.js'
import { extractTar } from '../../dist/files.js'

/** Every temporary directory of this file, removed when it ends. */
const tmpRoot = mkdtempSync(join(tmpdir(), 'den-sdk-ts-test-'))
after(() => rmSync(tmpRoot, { recursive: true, force: true }))

const longDir = 'd'.repeat(120)
const longName = `${longDir}/${'f'.repeat(150)}.txt` // needs a pax header

function tree() {
  const dir = mkdtempSync(join(tmpRoot, 'den-sdk-tar-'))
  mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true })
  writeFileSync(join(dir, 'a.txt'), 'alpha\n')
  writeFileSync(join(dir, 'sub', 'deeper', 'big.bin'), Buffer.alloc(70_000, 7))
  writeFileSync(join(dir, 'sub', 'empty'), '')
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 })
  symlinkSync('a.txt', join(dir, 'link'))
  mkdirSync(join(dir, longDir))
  writeFileSync(join(dir, longName), 'long\n')
  return dir
}

async function collect(gen) {
  const parts = []
  for await (const p of gen) parts.push(p)
  return Buffer.concat(parts)
}

function hasTar() {
  try {
    execFileSync('tar', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function checkTree(out) {
  assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), 'alpha\n')
  assert.deepEqual(readFileSync(join(out, 'sub', 'deeper', 'big.bin')), Buffer.alloc(70_000, 7))
  assert.equal(readFileSync(join(out, 'sub', 'empty'), 'utf8'), '')
  assert.equal(statSync(join(out, 'run.sh')).mode & 0o777, 0o755)
  assert.ok(lstatSync(join(out, 'link')).isSymbolicLink())
  assert.equal(readlinkSync(join(out, 'link')), 'a.txt')
  assert.equal(readFileSync(join(out, longName), 'utf8'), 'long\n')
}

test('the reader reads back what the writer wrote', async () => {
  const src = tree()
  const archive = await collect(tarStream(dirEntries(src)))
  assert.equal(archive.length % 512, 0)
  const names = []
  for await (const { header, body } of readTar([archive])) {
    names.push(`${header.type}:${header.name}`)
    if (header.name === 'a.txt') assert.equal((await collect(body)).toString(), 'alpha\n')
  }
  assert.deepEqual(names, [
    'file:a.txt',
    `dir:${longDir}`,
    `file:${longName}`,
    'symlink:link',
    'file:run.sh',
    'dir:sub',
    'dir:sub/deeper',
    'file:sub/deeper/big.bin',
    'file:sub/empty',
  ])
  const out = mkdtempSync(join(tmpRoot, 'den-sdk-tar-out-'))
  // One byte at a time: the reader must not depend on chunk boundaries.
  async function* bytewise() {
    for (let i = 0; i < archive.length; i += 1000) yield archive.subarray(i, i + 1000)
  }
  await extractTar(bytewise(), out)
  checkTree(out)
})

test('the system tar reads what the writer wrote, and the reader what it writes', { skip: hasTar() ? false : 'no tar on PATH' }, async () => {
  const src = tree()
  const archive = await collect(tarStream(dirEntries(src)))
  const file = join(mkdtempSync(join(tmpRoot, 'den-sdk-tar-')), 'a.tar')
  writeFileSync(file, archive)
  const out1 = mkdtempSync(join(tmpRoot, 'den-sdk-tar-out-'))
  execFileSync('tar', ['-x', '-f', file, '-C', out1])
  checkTree(out1)

  const sys = execFileSync('tar', ['-c', '-f', '-', '-C', src, '.'], { maxBuffer: 1 << 26 })
  const out2 = mkdtempSync(join(tmpRoot, 'den-sdk-tar-out-'))
  await extractTar([sys], out2)
  checkTree(out2)
})

test('extractTar refuses entries outside its directory', async () => {
  for (const name of ['../evil', '/abs/evil', 'a/../../evil']) {
    const archive = await collect(tarStream([{ name, type: 'file', mode: 0o644, mtime: new Date(), data: Buffer.from('x') }]))
    const out = mkdtempSync(join(tmpRoot, 'den-sdk-tar-out-'))
    await assert.rejects(extractTar([archive], out), { name: 'DenError', message: `tar: refusing the entry ${JSON.stringify(name)}, outside the directory` })
  }
})

test('extractTar writes nothing through a symbolic link of the archive', async () => {
  const victim = mkdtempSync(join(tmpRoot, 'den-sdk-tar-victim-'))
  const archive = await collect(
    tarStream([
      { name: 'ln', type: 'symlink', mode: 0o777, mtime: new Date(), linkname: victim },
      { name: 'ln/x', type: 'symlink', mode: 0o777, mtime: new Date(), linkname: '/etc/passwd' },
    ]),
  )
  const out = mkdtempSync(join(tmpRoot, 'den-sdk-tar-out-'))
  await assert.rejects(extractTar([archive], out), { name: 'DenError', message: `tar: refusing the entry ${JSON.stringify(join(out, 'ln', 'x'))}, below the symbolic link ${join(out, 'ln')}` })
})
