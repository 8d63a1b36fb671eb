// Configuration: options, then DEN_URL/DEN_API_KEY, then den up's env file.
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { Client, NotConfiguredError, readEnvFile, resolveConfig } from '@den/sdk'

/** Every temporary directory of this file, removed when it ends. */
const tmpRoot = mkdtempSync(join(tmpdir(), 'den-sdk-ts-test-'))
after(() => rmSync(tmpRoot, { recursive: true, force: true }))

function withEnv(vars, fn) {
  const saved = {}
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k]
    if (vars[k] === undefined) delete process.env[k]
    else process.env[k] = vars[k]
  }
  try {
    return fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

function envDir(text) {
  const dir = mkdtempSync(join(tmpRoot, 'den-sdk-cfg-'))
  writeFileSync(join(dir, 'env'), text)
  return dir
}

const clean = { DEN_URL: undefined, DEN_API_KEY: undefined, E2B_SANDBOX_URL: undefined }

test('readEnvFile parses export, quotes and comments', () => {
  const dir = envDir('# den up\nexport DEN_URL=http://127.0.0.1:7070\nDEN_API_KEY="den_\\u0061bc"\n\nE2B_SANDBOX_URL=\'http://127.0.0.1:7071\'\n')
  assert.deepEqual(readEnvFile(join(dir, 'env')), {
    DEN_URL: 'http://127.0.0.1:7070',
    DEN_API_KEY: 'den_abc',
    E2B_SANDBOX_URL: 'http://127.0.0.1:7071',
  })
  assert.deepEqual(readEnvFile(join(dir, 'missing')), {})
})

test('readEnvFile names a bad line', () => {
  const dir = envDir('DEN_URL=x\nnot a pair\n')
  assert.throws(() => readEnvFile(join(dir, 'env')), { message: `read env file ${join(dir, 'env')} line 2: want KEY=VALUE, got "not a pair"` })
})

test('the environment wins over the env file, options over both', () => {
  const dir = envDir('DEN_URL=http://file:1\nDEN_API_KEY=filekey\nE2B_SANDBOX_URL=http://file:2\n')
  withEnv({ ...clean, DEN_DATA_DIR: dir }, () => {
    assert.deepEqual(resolveConfig(), { url: 'http://file:1', apiKey: 'filekey', sandboxUrl: 'http://file:2' })
  })
  withEnv({ ...clean, DEN_DATA_DIR: dir, DEN_URL: 'http://env:1/', DEN_API_KEY: 'envkey' }, () => {
    // The file's sandbox listener belongs to the file's server only.
    assert.deepEqual(resolveConfig(), { url: 'http://env:1', apiKey: 'envkey', sandboxUrl: '' })
    assert.deepEqual(resolveConfig({ url: 'http://opt:1', apiKey: 'optkey', sandboxUrl: 'http://opt:2' }), { url: 'http://opt:1', apiKey: 'optkey', sandboxUrl: 'http://opt:2' })
  })
  withEnv({ ...clean, DEN_DATA_DIR: dir, DEN_URL: 'http://env:1' }, () => {
    // As sdk/go's FromEnv: a missing key comes from the file.
    assert.equal(resolveConfig().apiKey, 'filekey')
  })
})

test('no URL anywhere is NotConfiguredError', () => {
  const dir = mkdtempSync(join(tmpRoot, 'den-sdk-cfg-'))
  withEnv({ ...clean, DEN_DATA_DIR: dir }, () => {
    assert.throws(() => new Client(), (e) => e instanceof NotConfiguredError && e.message === 'den: no server URL: set DEN_URL and DEN_API_KEY, or start den with `den up`')
    assert.throws(() => new Client({ url: 'ftp://x' }), { name: 'NotConfiguredError', message: 'den: invalid server URL "ftp://x": want http(s)://host[:port]' })
  })
})
