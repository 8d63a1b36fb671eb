// Shared by the tests against a real den (test/run.mjs starts one and sets
// DEN_URL, DEN_API_KEY and E2B_SANDBOX_URL).
import { Client, Sandbox } from '@den/sdk'

/** The image every test sandbox runs: built by every den from the host's busybox, no network needed. */
export const image = 'busybox'

/** client is a client of the den under test, configured from the environment. */
export const client = new Client()

/** sandbox creates a sandbox that is deleted when the test t ends. */
export async function sandbox(t, opts = {}) {
  const sb = await Sandbox.create({ image, timeout: 600, ...opts, client })
  t.after(() => sb.kill())
  return sb
}

/** until polls fn until it returns a truthy value, or fails after timeoutMs naming what it waited for. */
export async function until(what, fn, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    last = await fn()
    if (last) return last
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** collect gathers an async iterable of byte chunks. */
export async function collect(it) {
  const parts = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}
