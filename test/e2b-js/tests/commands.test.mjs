// commands.run, background commands, connect, stdin, kill, list and PTYs.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError, TimeoutError } from 'e2b'
import { create, killQuietly, waitFor, enc, TEMPLATE } from './helpers.mjs'

describe(`commands in a '${TEMPLATE}' sandbox`, () => {
  let sbx
  before(async () => {
    sbx = await create({ metadata: { suite: 'commands' }, envs: { DEN_CREATE_ENV: 'from-create', DEN_OVERRIDE: 'create' } })
  })
  after(() => killQuietly(sbx))

  it('run: stdout and exit code 0', async () => {
    const r = await sbx.commands.run('echo hello')
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hello\n')
    assert.equal(r.stderr, '')
  })

  it('run: stderr is separate from stdout', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2')
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
  })

  it('run: a non-zero exit throws CommandExitError with the result', async () => {
    await assert.rejects(sbx.commands.run('echo out; echo err >&2; exit 3'), (err) => {
      assert.ok(err instanceof CommandExitError, `got ${err?.constructor?.name}: ${err}`)
      assert.equal(err.exitCode, 3)
      assert.equal(err.stdout, 'out\n')
      assert.equal(err.stderr, 'err\n')
      return true
    })
  })

  it('run: streams output to onStdout/onStderr', async () => {
    let out = ''
    let errOut = ''
    await sbx.commands.run('for i in 1 2 3; do echo o$i; echo e$i >&2; done', {
      onStdout: (d) => { out += d },
      onStderr: (d) => { errOut += d },
    })
    assert.equal(out, 'o1\no2\no3\n')
    assert.equal(errOut, 'e1\ne2\ne3\n')
  })

  it('run: cwd, and the default cwd is the user home', async () => {
    assert.equal((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n')
    assert.equal((await sbx.commands.run('pwd')).stdout, '/home/user\n')
  })

  it('run: per-command envs, create-time envs, and their precedence', async () => {
    const r = await sbx.commands.run('echo "$FOO|$DEN_CREATE_ENV|$DEN_OVERRIDE"', {
      envs: { FOO: 'bar baz', DEN_OVERRIDE: 'command' },
    })
    assert.equal(r.stdout, 'bar baz|from-create|command\n')
    assert.equal((await sbx.commands.run('echo "$DEN_OVERRIDE"')).stdout, 'create\n')
  })

  it('run: user root, user `user`, and the default user', async () => {
    assert.equal((await sbx.commands.run('whoami; echo $HOME', { user: 'root' })).stdout, 'root\n/root\n')
    assert.equal((await sbx.commands.run('whoami; echo $HOME', { user: 'user' })).stdout, 'user\n/home/user\n')
    assert.equal((await sbx.commands.run('whoami')).stdout, 'user\n')
    assert.equal((await sbx.commands.run('sudo -n whoami', { user: 'user' })).stdout, 'root\n')
  })

  it('run: timeoutMs ends a long command with TimeoutError', async () => {
    const start = Date.now()
    await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 1_500 }), (err) => {
      assert.ok(err instanceof TimeoutError, `got ${err?.constructor?.name}: ${err}`)
      return true
    })
    assert.ok(Date.now() - start < 15_000, `timeout took ${Date.now() - start} ms`)
  })

  it('background command: connect by pid, sendStdin, list, kill', async () => {
    let first = ''
    const h = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (d) => { first += d } })
    assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`)

    // A second client, as another program would, finds the process by pid.
    const other = await Sandbox.connect(sbx.sandboxId)
    let seen = ''
    const h2 = await other.commands.connect(h.pid, { onStdout: (d) => { seen += d } })
    assert.equal(h2.pid, h.pid)

    await other.commands.sendStdin(h.pid, 'ping\n')
    await waitFor(() => seen.includes('ping\n'), 'stdin echoed to the connected handle')
    await waitFor(() => first.includes('ping\n'), 'stdin echoed to the original handle')
    await h.sendStdin('pong\n')
    await waitFor(() => seen.includes('pong\n'), 'second stdin write echoed')

    const procs = await sbx.commands.list()
    const p = procs.find((x) => x.pid === h.pid)
    assert.ok(p, `pid ${h.pid} missing from commands.list: ${JSON.stringify(procs)}`)
    assert.equal(p.cmd, '/bin/bash')
    assert.deepEqual(p.args, ['-l', '-c', 'cat'])

    assert.equal(await other.commands.kill(h.pid), true)
    await assert.rejects(h2.wait(), (err) => {
      assert.ok(err instanceof CommandExitError, `got ${err?.constructor?.name}: ${err}`)
      assert.notEqual(err.exitCode, 0)
      return true
    })
    await waitFor(async () => !(await sbx.commands.list()).some((x) => x.pid === h.pid), 'killed pid to leave commands.list')
    assert.equal(await sbx.commands.kill(h.pid), false)
  })

  it('background command: wait returns the result after the fact', async () => {
    const h = await sbx.commands.run('sleep 1; echo done', { background: true })
    const r = await h.wait()
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'done\n')
    assert.equal(h.exitCode, 0)
  })

  it('background command: closeStdin sends EOF', async () => {
    const h = await sbx.commands.run('wc -c', { background: true, stdin: true })
    await h.sendStdin('12345')
    await h.closeStdin()
    const r = await h.wait()
    assert.equal(r.stdout.trim(), '5')
  })

  it('pty: create, sendInput, resize, exit', async () => {
    const dec = new TextDecoder()
    let out = ''
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { out += dec.decode(d, { stream: true }) }, timeoutMs: 120_000 })
    assert.ok(pty.pid > 0)
    assert.ok((await sbx.commands.list()).some((p) => p.pid === pty.pid), 'pty in commands.list')

    await sbx.pty.sendInput(pty.pid, enc('echo $((6*7))x\n'))
    await waitFor(() => out.includes('42x'), `pty output 42x (got ${JSON.stringify(out)})`)
    await sbx.pty.sendInput(pty.pid, enc('stty size\n'))
    await waitFor(() => out.includes('24 80'), `initial size 24 80 (got ${JSON.stringify(out)})`)

    await sbx.pty.resize(pty.pid, { cols: 132, rows: 43 })
    await sbx.pty.sendInput(pty.pid, enc('stty size; tty\n'))
    await waitFor(() => out.includes('43 132'), `resized 43 132 (got ${JSON.stringify(out)})`)
    // tty prints on its own: its line may come in a later chunk.
    await waitFor(() => /\/dev\/pts\/\d+/.test(out), `tty names a pts (got ${JSON.stringify(out)})`)

    await sbx.pty.sendInput(pty.pid, enc('exit 0\n'))
    const r = await pty.wait()
    assert.equal(r.exitCode, 0)
  })

  it('pty: kill', async () => {
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} })
    assert.equal(await sbx.pty.kill(pty.pid), true)
    await assert.rejects(pty.wait())
  })
})
