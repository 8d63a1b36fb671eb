// Time to interactive through the unmodified e2b SDK, after the ComputeSDK
// benchmark's method (computesdk/benchmarks, src/sandbox/benchmark.ts):
// timed = Sandbox.create() + an identity probe that must find no marker of
// a previous run in /tmp or /var/tmp + `node -v`; the kill is not timed.
// Statistics trim the top and bottom 5% of successful runs.
//
// Usage: node run.mjs [--mode sequential|staggered|burst] [-n 100]
//        [--stagger-ms 200] [--template base] [--json FILE]
// Environment: E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY (den up prints them).
import { Sandbox } from 'e2b'
import { writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

const PROBE = [
  'set -e',
  'for m in /tmp/.bench_ephemeral_check /var/tmp/.bench_ephemeral_check; do',
  '  if [ -e "$m" ]; then echo "Sandbox/container reuse detected: $m" >&2; exit 17; fi',
  'done',
  'readlink /proc/self/ns/mnt /proc/self/ns/pid /proc/self/ns/uts',
  'sha256sum /proc/self/cgroup | cut -c1-16',
  'cat /proc/sys/kernel/random/boot_id',
  "tr '\\0' ' ' < /proc/1/cmdline; echo",
  'cat /proc/uptime',
  'touch /tmp/.bench_ephemeral_check /var/tmp/.bench_ephemeral_check',
].join('\n')

function parseArgs(argv) {
  const o = { mode: 'sequential', n: 100, staggerMs: 200, template: 'base', json: '' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1]
    if (a === '--mode') { o.mode = v; i++ }
    else if (a === '-n') { o.n = Number(v); i++ }
    else if (a === '--stagger-ms') { o.staggerMs = Number(v); i++ }
    else if (a === '--template') { o.template = v; i++ }
    else if (a === '--json') { o.json = v; i++ }
    else throw new Error(`unknown argument ${a}`)
  }
  if (!['sequential', 'staggered', 'burst'].includes(o.mode)) throw new Error(`unknown --mode ${o.mode}`)
  if (!(o.n > 0)) throw new Error('-n must be a positive number')
  return o
}

async function iteration(template) {
  const start = performance.now()
  let sbx
  try {
    sbx = await Sandbox.create(template, { requestTimeoutMs: 120_000 })
    const probe = await sbx.commands.run(PROBE, { timeoutMs: 30_000 })
    const boot = probe.stdout.split('\n')[4]
    const node = await sbx.commands.run('node -v', { timeoutMs: 30_000 })
    if (!node.stdout.startsWith('v')) throw new Error(`node -v printed ${JSON.stringify(node.stdout)}`)
    return { ok: true, ms: performance.now() - start, boot }
  } catch (err) {
    return { ok: false, ms: performance.now() - start, error: String(err?.message ?? err) }
  } finally {
    if (sbx) await Promise.race([sbx.kill().catch(() => {}), new Promise(r => setTimeout(r, 15_000))])
  }
}

async function run(o) {
  const wallStart = performance.now()
  let results
  if (o.mode === 'sequential') {
    results = []
    for (let i = 0; i < o.n; i++) results.push(await iteration(o.template))
  } else {
    const delay = o.mode === 'staggered' ? o.staggerMs : 0
    results = await Promise.all(Array.from({ length: o.n }, (_, i) =>
      new Promise(r => setTimeout(r, i * delay)).then(() => iteration(o.template))))
  }
  return { results, wallMs: performance.now() - wallStart }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[idx]
}

export function stats(values, trim = 0.05) {
  const sorted = [...values].sort((a, b) => a - b)
  const k = Math.floor(sorted.length * trim)
  const kept = sorted.slice(k, sorted.length - k)
  return {
    n: values.length, trimmed: kept.length,
    median: percentile(kept, 50), p95: percentile(kept, 95), p99: percentile(kept, 99),
    min: sorted[0], max: sorted[sorted.length - 1],
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const { results, wallMs } = await run(o)
  const ok = results.filter(r => r.ok)
  const boots = new Set(ok.map(r => r.boot))
  const s = stats(ok.map(r => r.ms))
  const report = {
    date: new Date().toISOString(), mode: o.mode, iterations: o.n, template: o.template,
    success: ok.length, successRate: ok.length / o.n, distinctBootIds: boots.size,
    wallMs, ttiMs: s, errors: results.filter(r => !r.ok).slice(0, 5).map(r => r.error),
  }
  const f = v => (Number.isFinite(v) ? v.toFixed(1) : '-')
  console.log(`${o.mode} x${o.n} (${o.template}): ${ok.length}/${o.n} ok, ` +
    `median ${f(s.median)} ms, p95 ${f(s.p95)} ms, p99 ${f(s.p99)} ms (trimmed 5%), ` +
    `wall ${f(wallMs)} ms, ${boots.size} distinct boot ids`)
  for (const e of report.errors) console.log(`  error: ${e}`)
  if (o.json) writeFileSync(o.json, JSON.stringify(report, null, 2))
  if (ok.length !== o.n) process.exitCode = 1
}

if (import.meta.url === `file://${process.argv[1]}`) main().catch(err => { console.error(err); process.exit(2) })
