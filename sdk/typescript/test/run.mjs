#!/usr/bin/env node
// Runs the SDK's tests: first the checks that need no server (the spec
// coverage, dist and generated types up to date, the type check, unit
// tests), then the tests against a real den. Unless DEN_URL is set, it
// starts `den up` (binary: $DEN_BIN, else the repo's bin/den) on a fresh
// data directory with --no-base (sandboxes use the busybox image, built
// from the host's busybox in an instant), hands its DEN_URL, DEN_API_KEY
// and E2B_SANDBOX_URL to the tests, and stops it afterwards.
//
// Usage: node test/run.mjs [FILES...]   (default: every test file)
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = resolve(here, '..')
const repo = resolve(pkg, '..', '..')

/** startDen starts den up and resolves with its env once it printed DEN_URL and DEN_API_KEY. */
function startDen() {
  const bin = process.env.DEN_BIN || join(repo, 'bin', 'den')
  if (!existsSync(bin)) throw new Error(`den binary not found at ${bin}: run \`make build\` or set DEN_BIN`)
  const dataDir = mkdtempSync(join(tmpdir(), 'den-sdk-ts-'))
  const child = spawn(bin, ['up', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--no-base', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  child.stderr.on('data', (d) => {
    log += d
    if (log.length > 200_000) log = log.slice(-100_000)
  })
  return new Promise((resolvePromise, reject) => {
    const vars = {}
    const timer = setTimeout(() => reject(new Error(`den up printed no DEN_URL within 60s:\n${log}`)), 60_000)
    child.on('exit', (code) => reject(new Error(`den up exited (${code}) before printing DEN_URL/DEN_API_KEY:\n${log}`)))
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line)
      if (m) vars[m[1]] = m[2]
      if (vars.DEN_URL && vars.DEN_API_KEY && vars.E2B_SANDBOX_URL) {
        clearTimeout(timer)
        resolvePromise({ child, dataDir, vars, log: () => log })
      }
    })
  })
}

/** removeAll deletes the sandboxes the tests left (they outlive den up otherwise). */
async function removeAll(den) {
  const headers = { 'X-API-Key': den.vars.DEN_API_KEY }
  const res = await fetch(`${den.vars.DEN_URL}/v1/sandboxes?limit=1000`, { headers })
  const { sandboxes = [] } = await res.json()
  for (const sb of sandboxes) await fetch(`${den.vars.DEN_URL}/v1/sandboxes/${sb.id}`, { method: 'DELETE', headers })
  if (sandboxes.length > 0) console.log(`removed ${sandboxes.length} sandboxes the tests left`)
}

/** stopDen interrupts den like Ctrl-C, waits for it, and removes its data directory. */
async function stopDen(den) {
  await removeAll(den).catch((e) => console.error(`remove the tests' sandboxes: ${e.message}`))
  den.child.removeAllListeners('exit')
  const exited = new Promise((r) => den.child.on('exit', r))
  den.child.kill('SIGINT')
  const killed = setTimeout(() => den.child.kill('SIGKILL'), 20_000)
  await exited
  clearTimeout(killed)
  rmSync(den.dataDir, { recursive: true, force: true, maxRetries: 3 })
}

function run(cmd, args, env) {
  return new Promise((r) => {
    const c = spawn(cmd, args, { stdio: 'inherit', cwd: pkg, env })
    c.on('exit', (code, sig) => r(code ?? (sig ? 1 : 0)))
  })
}

const testFiles = process.argv.slice(2)
const offline = ['test/unit/']
const online = testFiles.length > 0 ? testFiles : readdirSync(join(here, 'e2e')).filter((f) => f.endsWith('.test.mjs')).map((f) => `test/e2e/${f}`)

let code = 0
if (testFiles.length === 0) {
  code = await run(process.execPath, ['scripts/check-fresh.mjs'], process.env)
  if (code === 0) code = await run(process.execPath, ['--test', '--test-reporter=spec', ...offline], process.env)
}
if (code === 0) {
  let den
  const env = { ...process.env }
  if (!process.env.DEN_URL) {
    den = await startDen()
    Object.assign(env, { DEN_URL: den.vars.DEN_URL, DEN_API_KEY: den.vars.DEN_API_KEY, E2B_SANDBOX_URL: den.vars.E2B_SANDBOX_URL })
    console.log(`den up at ${den.vars.DEN_URL} (data dir ${den.dataDir})`)
  }
  try {
    code = await run(process.execPath, ['--test', '--test-reporter=spec', '--test-timeout=300000', ...online], env)
  } finally {
    if (den) {
      if (code !== 0) console.error(`den log (tail):\n${den.log().slice(-6000)}`)
      await stopDen(den)
    }
  }
}
process.exit(code)
