// Type-checked, never run (scripts/check-fresh.mjs): the public API as a
// caller writes it, through the package's own name and published types.
import {
  APIError,
  Client,
  NotFoundError,
  Sandbox,
  type CommandEvent,
  type CommandResult,
  type EntryInfo,
  type FilesystemEvent,
  type SandboxInfo,
} from '@den/sdk'

export async function usage(): Promise<void> {
  const client = new Client({ url: 'http://127.0.0.1:7070', apiKey: 'k' })
  const sb = await Sandbox.create({ image: 'busybox', cpus: 1, memoryMB: 256, diskMB: 512, env: { A: 'b' }, metadata: { k: 'v' }, timeout: 60, timeoutAction: 'suspend', idleTimeout: 0, idleAction: 'kill', network: { internet: false }, client })
  const r: CommandResult = await sb.commands.run('echo hi', { cwd: '/', envs: { X: '1' }, user: 'root', timeoutMs: 1000, onStdout: (s: string) => void s, stdin: 'in' })
  const code: number = r.exitCode
  for await (const ev of sb.commands.stream(['ls', '-l'])) {
    const e: CommandEvent = ev
    if (e.type === 'stdout') void e.data.byteLength
    if (e.type === 'exit') void e.exitCode
  }
  await sb.files.write('/tmp/x', new Uint8Array([1]))
  const bytes: Uint8Array = await sb.files.read('/tmp/x')
  const text: string = await sb.files.readText('/tmp/x')
  const list: EntryInfo[] = await sb.files.list('/tmp', { depth: 2 })
  const w = await sb.files.watch('/tmp', { recursive: true })
  for await (const ev of w) {
    const e: FilesystemEvent = ev
    void e.op
    break
  }
  const h = await sb.pty.create({ cols: 80, rows: 24, onData: (d: Uint8Array) => void d })
  await h.resize({ cols: 100, rows: 30 })
  const info: SandboxInfo = await sb.suspend()
  const created: Date = info.createdAt
  await sb.resume()
  const snap = await sb.snapshot({ name: 's', mode: 'memory' })
  const { sandboxes } = await sb.fork({ count: 2 })
  for await (const s of client.sandboxes.list({ state: ['running', 'suspended'], metadata: { k: 'v' } })) void s.id
  await client.images.build('.', { tag: 'x', buildArgs: { A: 'b' }, onLog: (l: string) => void l })
  await client.images.pull('docker.io/library/alpine:3.20', { onProgress: (p) => void p.phase })
  try {
    await client.sandboxes.get('nope')
  } catch (e) {
    if (e instanceof NotFoundError) void e.message
    if (e instanceof APIError) void [e.code, e.status]
  }
  void [code, bytes, text, list, created, snap.id, sandboxes.length]
  await sb.kill()
}
