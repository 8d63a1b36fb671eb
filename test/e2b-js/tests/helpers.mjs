// Shared set-up for the e2b SDK suite: it runs the unmodified `e2b` npm
// package against den's E2B facade, configured only by the three variables
// `den up` prints (and writes to <data-dir>/env).
import { randomUUID } from 'node:crypto'
import { Sandbox } from 'e2b'

for (const name of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_API_KEY']) {
  if (!process.env[name]) {
    throw new Error(`${name} is not set: start den (\`den up\`) and eval "$(cat <data-dir>/env)" first`)
  }
}

// TEMPLATE is the facade template the scenario runs in: den's Debian base
// image (bash, python3, node, git, curl; default user `user`).
export const TEMPLATE = process.env.E2B_TEST_TEMPLATE || 'base'

// RUN_ID tags every sandbox this process creates, so list filters only see ours.
export const RUN_ID = randomUUID()

export const enc = (s) => new TextEncoder().encode(s)

// create starts a sandbox with the suite's metadata tag and a generous
// timeout (sandboxes must outlive a slow 2-core test run).
export async function create(opts = {}) {
  const { metadata, ...rest } = opts
  return Sandbox.create(TEMPLATE, {
    timeoutMs: 900_000,
    ...rest,
    metadata: { denTestRun: RUN_ID, ...(metadata || {}) },
  })
}

// killQuietly removes a sandbox at the end of a test, ignoring errors.
export async function killQuietly(sbx) {
  if (!sbx) return
  try {
    await sbx.kill()
  } catch {}
}

// waitFor polls fn until it returns a truthy value or timeoutMs passes.
export async function waitFor(fn, what, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`)
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
