// Processes in a real sandbox: run, stream, background processes, attach,
// signals, stdin, timeouts, terminals, and 50 concurrent commands.
import assert from 'node:assert/strict'
import diagnostics from 'node:diagnostics_channel'
import { test } from 'node:test'
import { CommandHandle, FailedPreconditionError, InvalidArgumentError, NotFoundError, TimeoutError } from '@den/sdk'
import { sandbox, until } from './helpers.mjs'

test('commands', async (t) => {
  const sb = await sandbox(t, { env: { FROM_CREATE: 'yes' } })

  await t.test('run collects output and exit code; a failure is a result', async () => {
    const r = await sb.commands.run('echo out; echo err >&2; exit 3')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal(r.exitCode, 3)
    assert.equal(r.exited, true)
    assert.equal(r.status, 'exit status 3')
    assert.ok(r.pid > 0)
  })

  await t.test('commands keep their connection', async () => {
    // A command's stream is read to its end after its exit, in the
    // background: one cancelled before takes its connection along.
    await sb.commands.run('true')
    await new Promise((r) => setTimeout(r, 50))
    let connects = 0
    const count = () => connects++
    diagnostics.subscribe('undici:client:connected', count)
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal((await sb.commands.run('echo kept')).stdout, 'kept\n')
        await new Promise((r) => setTimeout(r, 50))
      }
    } finally {
      diagnostics.unsubscribe('undici:client:connected', count)
    }
    assert.ok(connects <= 1, `5 commands dialled ${connects} connections`)
  })

  await t.test('run takes cwd, envs, user and an argv', async () => {
    const r = await sb.commands.run('echo "$PWD $A $FROM_CREATE $(id -un)"', { cwd: '/tmp', envs: { A: 'b c' }, user: 'user' })
    assert.equal(r.stdout, '/tmp b c yes user\n')
    const argv = await sb.commands.run(['printf', '%s|', 'a b', '$HOME'])
    assert.equal(argv.stdout, 'a b|$HOME|')
    const asUser = await sb.asUser('user').commands.run('id -u; echo $HOME')
    assert.equal(asUser.stdout, '1000\n/home/user\n')
  })

  await t.test('callbacks see the output as it arrives', async () => {
    const out = []
    const err = []
    const r = await sb.commands.run('for i in 1 2 3; do echo $i; echo e$i >&2; done', { onStdout: (s) => out.push(s), onStderr: (s) => err.push(s) })
    assert.equal(out.join(''), '1\n2\n3\n')
    assert.equal(err.join(''), 'e1\ne2\ne3\n')
    assert.equal(r.stdout, '1\n2\n3\n')
  })

  await t.test('stdin is sent and closed', async () => {
    const r = await sb.commands.run('wc -c', { stdin: 'x'.repeat(200_000) })
    assert.equal(r.stdout.trim(), '200000')
    async function* parts() {
      yield new TextEncoder().encode('one\n')
      yield new TextEncoder().encode('two\n')
    }
    const r2 = await sb.commands.run('cat', { stdin: parts() })
    assert.equal(r2.stdout, 'one\ntwo\n')
  })

  await t.test('timeoutMs kills the command and throws TimeoutError', async () => {
    await assert.rejects(sb.commands.run('sleep 30', { timeoutMs: 500, tag: 'sleeper' }), (e) => e instanceof TimeoutError && e.message === 'the command ran past its timeout of 500 ms and was killed')
    await until('the timed-out process to be gone', async () => !(await sb.commands.list()).some((p) => p.tag === 'sleeper'))
  })

  await t.test('stream yields start, chunks and exit', async () => {
    const events = []
    for await (const ev of sb.commands.stream('echo a; echo b >&2; exit 1')) events.push(ev)
    assert.equal(events[0].type, 'start')
    assert.ok(events[0].pid > 0)
    const text = (type) => Buffer.concat(events.filter((e) => e.type === type).map((e) => e.data)).toString()
    assert.equal(text('stdout'), 'a\n')
    assert.equal(text('stderr'), 'b\n')
    assert.deepEqual(events.at(-1), { type: 'exit', exitCode: 1, exited: true, status: 'exit status 1' })
  })

  await t.test('background processes: list, connect by tag, input, signal', async () => {
    const h = await sb.commands.start('sleep 60', { tag: 'nostdin' })
    assert.ok(h instanceof CommandHandle)
    // Started without stdin: the guest refuses input.
    await assert.rejects(h.sendStdin('x\n'), (e) => e instanceof FailedPreconditionError && e.status === 409 && e.message === `stdin of process ${h.pid} is not open (start it with stdin=true)`)
    await h.kill()
    const killed = await h.wait()
    assert.equal(killed.exited, false)
    assert.equal(killed.exitCode, -1)
    assert.equal(killed.status, 'signal: killed')

    // An input that ends at once: stdin is closed and the loop ends.
    const bg = await sb.commands.start(['/bin/sh', '-c', 'while read line; do echo "got $line"; done; echo done'], { stdin: (async function* () {})() })

    // An input that never ends keeps stdin open for sendInput.
    const open = await sb.commands.start('while read line; do echo "got $line"; done; echo done', { tag: 'open', stdin: new ReadableStream({ start() {} }) })
    const procs = await sb.commands.list()
    const p = procs.find((x) => x.tag === 'open')
    assert.ok(p, `open not in ${JSON.stringify(procs)}`)
    assert.equal(p.pid, open.pid)
    assert.equal(p.cmd, '/bin/sh')
    assert.deepEqual(p.args, ['-c', 'while read line; do echo "got $line"; done; echo done'])
    const seen = []
    const attached = await sb.commands.connect({ tag: 'open' }, { onStdout: (s) => seen.push(s) })
    assert.equal(attached.pid, open.pid)
    await sb.commands.sendInput({ tag: 'open' }, 'hello\n')
    await until('the echo of the input', () => attached.stdout.includes('got hello\n'))
    await sb.commands.closeStdin(open.pid)
    const r = await attached.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'got hello\ndone\n')
    assert.equal(seen.join(''), 'got hello\ndone\n')
    assert.equal((await open.wait()).stdout, 'got hello\ndone\n')
    assert.equal((await bg.wait()).stdout, 'done\n')

    // Disconnecting stops the reading, not the process.
    const detached = await sb.commands.start('sleep 60', { tag: 'detached' })
    detached.disconnect()
    await assert.rejects(detached.wait(), { name: 'AbortError', message: 'disconnected from the process' })
    assert.ok((await sb.commands.list()).some((x) => x.pid === detached.pid))
    const again = await sb.commands.connect(detached.pid)
    await again.signal('SIGKILL')
    assert.equal((await again.wait()).status, 'signal: killed')

    const sleeper = await sb.commands.start('sleep 60', { tag: 'term' })
    await sb.commands.signal({ tag: 'term' }, 'SIGTERM')
    const st = await sleeper.wait()
    assert.equal(st.status, 'signal: terminated')
  })

  await t.test('errors of the guest map to their classes', async () => {
    await assert.rejects(sb.commands.connect(999999), (e) => e instanceof NotFoundError && e.code === 'not_found' && e.status === 404 && e.message === 'process pid 999999: process not found')
    await assert.rejects(sb.commands.kill({ tag: 'no-such-tag' }), (e) => e instanceof NotFoundError && e.message === 'process tag "no-such-tag": process not found')
    await assert.rejects(sb.commands.run([]), { name: 'DenError', message: 'run: empty command' })
    await assert.rejects(sb.commands.run('true', { cwd: '/no/such/dir' }), (e) => e instanceof InvalidArgumentError && e.message === 'cwd "/no/such/dir" is not a directory')
    await assert.rejects(sb.commands.run('true', { user: 'nobody' }), (e) => e instanceof InvalidArgumentError && e.message === 'user "nobody" not found')
    const missing = await sb.commands.run('no-such-program')
    assert.equal(missing.exitCode, 127)
    assert.equal(missing.stderr, '/bin/sh: no-such-program: not found\n')
  })

  await t.test('pty: output, input, resize', async () => {
    let screen = ''
    const term = await sb.pty.create({ cols: 80, rows: 24, cmd: ['/bin/sh'], onData: (d) => (screen += Buffer.from(d).toString()) })
    await term.sendInput('stty size\n')
    await until('stty size to print 24 80', () => screen.includes('24 80'))
    await term.resize({ cols: 120, rows: 40 })
    await sb.pty.sendInput(term.pid, 'stty size; exit 7\n')
    const r = await term.wait()
    assert.ok(screen.includes('40 120'), screen)
    assert.equal(r.exitCode, 7)
    assert.ok(r.stdout.includes('40 120'))

    // The same by selector, and a kill; the default command is a login shell.
    let out = ''
    const shell = await sb.pty.create({ cols: 50, rows: 10, tag: 'tty', onData: (d) => (out += Buffer.from(d).toString()) })
    await sb.pty.resize({ tag: 'tty' }, { cols: 60, rows: 11 })
    await shell.sendInput('stty size\n')
    await until('stty size to print 11 60', () => out.includes('11 60'))
    await sb.pty.kill({ tag: 'tty' })
    assert.equal((await shell.wait()).status, 'signal: killed')
  })

  await t.test('50 concurrent commands', async () => {
    const n = 50
    const results = await Promise.all(Array.from({ length: n }, (_, i) => sb.commands.run(`echo ${i}; echo err${i} >&2; exit ${i % 7}`)))
    results.forEach((r, i) => {
      assert.equal(r.stdout, `${i}\n`)
      assert.equal(r.stderr, `err${i}\n`)
      assert.equal(r.exitCode, i % 7)
    })
  })
})
