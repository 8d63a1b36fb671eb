// Processes in a sandbox, over the guest agent's process.Process service:
// run a command and collect its output, stream its events, start it in the
// background, re-attach, signal, send input, and pseudo-terminals.
import { b64, serverStream, unary, unb64 } from './connect.js';
import { DenError, TimeoutError } from './errors.js';
function selector(sel) {
    return typeof sel === 'number' ? { pid: sel } : sel;
}
/** The chunk size of input sent to a process: one SendInput call each. */
const inputChunk = 64 << 10;
/** Commands runs and manages processes of one sandbox (sandbox.commands). */
export class Commands {
    guest;
    /** @internal */
    constructor(guest) {
        this.guest = guest;
    }
    /**
     * run runs cmd, waits for it to end and returns its exit code and
     * output. A string runs with /bin/sh -c; an array is the program and its
     * arguments. A non-zero exit is a result, not an error.
     */
    async run(cmd, opts = {}) {
        const h = await this.start(cmd, opts);
        return h.wait();
    }
    /**
     * stream runs cmd and yields its events: start (with the PID), stdout
     * and stderr chunks as they arrive, then exit. Leaving the loop early
     * stops reading but does not kill the process.
     */
    async *stream(cmd, opts = {}) {
        const t = this.guest(opts.user);
        const events = processEvents(t, 'process.Process/Start', startRequest(cmd, opts), opts.signal);
        for await (const ev of events) {
            if (ev.type === 'start' && opts.stdin !== undefined)
                void pumpStdin(t, ev.pid, opts.stdin, false, opts.signal);
            yield ev;
        }
    }
    /**
     * start starts cmd in the background and returns its handle once it runs
     * (its PID known). Output is collected and passed to the callbacks until
     * the handle's wait() resolves.
     */
    async start(cmd, opts = {}) {
        const t = this.guest(opts.user);
        const req = startRequest(cmd, opts);
        if (opts.pty)
            req.pty = { size: { cols: opts.pty.cols, rows: opts.pty.rows } };
        return CommandHandle.open(t, 'process.Process/Start', req, opts);
    }
    /**
     * connect attaches to a running process: the returned handle receives
     * the output produced from now on and its wait() resolves when the
     * process ends.
     */
    async connect(sel, opts = {}) {
        return CommandHandle.open(this.guest(), 'process.Process/Connect', { process: selector(sel) }, opts);
    }
    /** list lists the processes the guest agent started that still run. */
    async list(opts = {}) {
        const res = await unary(this.guest(), 'process.Process/List', {}, opts);
        return (res.processes ?? []).map((p) => {
            const info = { pid: p.pid ?? 0, cmd: p.config?.cmd ?? '', args: p.config?.args ?? [], envs: p.config?.envs ?? {} };
            if (p.tag !== undefined)
                info.tag = p.tag;
            if (p.config?.cwd !== undefined)
                info.cwd = p.config.cwd;
            return info;
        });
    }
    /** signal sends SIGTERM or SIGKILL to a process. */
    async signal(sel, signal, opts = {}) {
        await sendSignal(this.guest(), sel, signal, opts);
    }
    /** kill sends SIGKILL to a process. */
    async kill(sel, opts = {}) {
        await sendSignal(this.guest(), sel, 'SIGKILL', opts);
    }
    /** sendInput writes data to the stdin of a process started with stdin. */
    async sendInput(sel, data, opts = {}) {
        await sendInput(this.guest(), selector(sel), toBytes(data), false, opts);
    }
    /** closeStdin closes a process's stdin, so that it reads EOF. */
    async closeStdin(sel, opts = {}) {
        await unary(this.guest(), 'process.Process/CloseStdin', { process: selector(sel) }, opts);
    }
}
/** Pty runs processes on pseudo-terminals (sandbox.pty). */
export class Pty {
    commands;
    guest;
    /** @internal */
    constructor(commands, guest) {
        this.commands = commands;
        this.guest = guest;
    }
    /** create starts a process on a new terminal of the given size and returns its handle. */
    async create(opts) {
        const { cols, rows, onData, cmd, ...rest } = opts;
        const envs = { TERM: 'xterm-256color', ...rest.envs };
        const start = { ...rest, envs, pty: { cols, rows } };
        if (onData)
            start.onPty = onData;
        return this.commands.start(cmd ?? ['/bin/sh', '-l'], start);
    }
    /** sendInput types data on a process's terminal (Ctrl-C is "\x03"). */
    async sendInput(sel, data, opts = {}) {
        await sendInput(this.guest(), selector(sel), toBytes(data), true, opts);
    }
    /** resize changes the size of a process's terminal. */
    async resize(sel, size, opts = {}) {
        await resize(this.guest(), sel, size, opts);
    }
    /** kill sends SIGKILL to the process of a terminal. */
    async kill(sel, opts = {}) {
        await sendSignal(this.guest(), sel, 'SIGKILL', opts);
    }
}
/**
 * CommandHandle is a process started in the background (commands.start,
 * pty.create) or attached to (commands.connect). Its output is read in the
 * background and collected; wait() resolves when the process ends.
 */
export class CommandHandle {
    t;
    /** The process's PID. */
    pid;
    out = '';
    err = '';
    done;
    abort;
    constructor(t, pid, events, abort, opts, timedOut) {
        this.t = t;
        this.pid = pid;
        this.abort = abort;
        this.done = this.collect(events, opts, timedOut);
        // wait() hands the outcome to whoever asks; an outcome nobody asks for
        // must not become an unhandled rejection.
        this.done.catch(() => { });
    }
    /** @internal */
    static async open(t, procedure, req, opts) {
        const abort = new AbortController();
        const unlink = link(opts.signal, abort);
        let pid = 0;
        let timedOut = false;
        const timeoutErr = new TimeoutError(`the command ran past its timeout of ${opts.timeoutMs} ms and was killed`);
        // At the timeout: kill the process, whose end event then ends the
        // stream (collect turns it into timeoutErr), and stop reading anyway
        // soon after, in case the end never comes.
        const timer = opts.timeoutMs === undefined
            ? undefined
            : setTimeout(() => {
                timedOut = true;
                const kill = pid ? sendSignal(t, pid, 'SIGKILL', {}).catch(() => { }) : Promise.resolve();
                void kill.finally(() => setTimeout(() => abort.abort(timeoutErr), 2000).unref());
                if (!pid)
                    abort.abort(timeoutErr);
            }, opts.timeoutMs);
        const events = processEvents(t, procedure, req, abort.signal);
        const cleanup = () => {
            clearTimeout(timer);
            unlink();
        };
        try {
            const first = await events.next();
            if (first.done || first.value.type !== 'start')
                throw new DenError(`${procedure}: the stream did not start with the process's start event`);
            pid = first.value.pid;
        }
        catch (e) {
            cleanup();
            throw timedOut ? timeoutErr : e;
        }
        if (opts.stdin !== undefined)
            void pumpStdin(t, pid, opts.stdin, false, abort.signal);
        const h = new CommandHandle(t, pid, events, abort, opts, () => (timedOut ? timeoutErr : undefined));
        void h.done.finally(cleanup).catch(() => { });
        return h;
    }
    async collect(events, opts, timedOut) {
        const outDec = new TextDecoder();
        const errDec = new TextDecoder();
        let draining = false;
        try {
            for (;;) {
                const next = await events.next();
                if (next.done)
                    break;
                const ev = next.value;
                switch (ev.type) {
                    case 'stdout':
                    case 'pty': {
                        const s = outDec.decode(ev.data, { stream: true });
                        this.out += s;
                        if (ev.type === 'pty')
                            opts.onPty?.(ev.data);
                        else if (s)
                            opts.onStdout?.(s);
                        break;
                    }
                    case 'stderr': {
                        const s = errDec.decode(ev.data, { stream: true });
                        this.err += s;
                        if (s)
                            opts.onStderr?.(s);
                        break;
                    }
                    case 'exit': {
                        const te = timedOut();
                        if (te)
                            throw te;
                        this.out += outDec.decode(); // a sequence cut at the end
                        this.err += errDec.decode();
                        const res = { exitCode: ev.exitCode, stdout: this.out, stderr: this.err, exited: ev.exited, status: ev.status, pid: this.pid };
                        if (ev.error !== undefined)
                            res.error = ev.error;
                        draining = true;
                        drainAfterExit(events);
                        return res;
                    }
                }
            }
        }
        catch (e) {
            const te = timedOut();
            if (te)
                throw te;
            if (this.abort.signal.aborted)
                throw this.abort.signal.reason ?? e;
            throw e;
        }
        finally {
            // As a for-await loop would: a stream left early is cancelled.
            if (!draining)
                await events.return(undefined).catch(() => { });
        }
        throw new DenError(`process ${this.pid}: the stream ended without an exit status`);
    }
    /** The standard output (with a terminal: its output) collected so far. */
    get stdout() {
        return this.out;
    }
    /** The standard error collected so far. */
    get stderr() {
        return this.err;
    }
    /** wait resolves with the result when the process ends; a non-zero exit is not an error. */
    wait() {
        return this.done;
    }
    /** kill sends SIGKILL to the process. */
    async kill(opts = {}) {
        await sendSignal(this.t, this.pid, 'SIGKILL', opts);
    }
    /** signal sends a signal to the process. */
    async signal(signal, opts = {}) {
        await sendSignal(this.t, this.pid, signal, opts);
    }
    /** sendStdin writes to the process's stdin (it must have been started with stdin). */
    async sendStdin(data, opts = {}) {
        await sendInput(this.t, { pid: this.pid }, toBytes(data), false, opts);
    }
    /** closeStdin closes the process's stdin. */
    async closeStdin(opts = {}) {
        await unary(this.t, 'process.Process/CloseStdin', { process: { pid: this.pid } }, opts);
    }
    /** sendInput types on the process's terminal (pty.create). */
    async sendInput(data, opts = {}) {
        await sendInput(this.t, { pid: this.pid }, toBytes(data), true, opts);
    }
    /** resize changes the size of the process's terminal (pty.create). */
    async resize(size, opts = {}) {
        await resize(this.t, this.pid, size, opts);
    }
    /**
     * disconnect stops receiving the output; the process keeps running and
     * wait() rejects with an AbortError. commands.connect attaches again.
     */
    disconnect() {
        this.abort.abort(new DOMException('disconnected from the process', 'AbortError'));
    }
}
/** startRequest is the StartRequest of cmd. */
function startRequest(cmd, opts) {
    const argv = typeof cmd === 'string' ? ['/bin/sh', '-c', cmd] : [...cmd];
    if (argv.length === 0)
        throw new DenError('run: empty command');
    const proc = { cmd: argv[0], args: argv.slice(1), envs: opts.envs ?? {} };
    if (opts.cwd !== undefined)
        proc.cwd = opts.cwd;
    const req = { process: proc };
    if (opts.tag !== undefined)
        req.tag = opts.tag;
    if (opts.stdin !== undefined)
        req.stdin = true;
    return req;
}
/** processEvents decodes the ProcessEvents of a Start or Connect stream. */
async function* processEvents(t, procedure, req, signal) {
    const opts = signal ? { signal } : {};
    let after = -1; // messages read after the exit event
    for await (const msg of serverStream(t, procedure, req, opts)) {
        if (after >= 0) {
            // Asked for more after the exit (drainAfterExit): the stream's end is
            // read so that its connection is kept; nothing more is expected.
            if (++after >= 4)
                return;
            continue;
        }
        const ev = msg.event;
        if (ev?.start) {
            yield { type: 'start', pid: ev.start.pid ?? 0 };
        }
        else if (ev?.data) {
            const d = ev.data;
            if (d.stdout !== undefined)
                yield { type: 'stdout', data: unb64(d.stdout) };
            else if (d.stderr !== undefined)
                yield { type: 'stderr', data: unb64(d.stderr) };
            else if (d.pty !== undefined)
                yield { type: 'pty', data: unb64(d.pty) };
        }
        else if (ev?.end) {
            const e = ev.end;
            const exit = { type: 'exit', exitCode: e.exitCode ?? 0, exited: e.exited ?? false, status: e.status ?? '' };
            if (e.error !== undefined)
                exit.error = e.error;
            yield exit;
            after = 0;
        }
    }
    if (after >= 0)
        return;
    throw new DenError(`${procedure}: the stream ended without an exit status`);
}
async function sendSignal(t, sel, signal, opts) {
    await unary(t, 'process.Process/SendSignal', { process: selector(sel), signal: `SIGNAL_${signal}` }, opts);
}
async function sendInput(t, sel, data, pty, opts) {
    for (let off = 0; off < data.length || off === 0; off += inputChunk) {
        const part = b64(data.subarray(off, off + inputChunk));
        await unary(t, 'process.Process/SendInput', { process: sel, input: pty ? { pty: part } : { stdin: part } }, opts);
        if (data.length === 0)
            break;
    }
}
async function resize(t, sel, size, opts) {
    await unary(t, 'process.Process/Update', { process: selector(sel), pty: { size: { cols: size.cols, rows: size.rows } } }, opts);
}
/**
 * pumpStdin sends input to the process as it is read and then closes its
 * stdin. Errors end it quietly, as in the Go SDK: a process that exits
 * without reading its input is not a failure of the command.
 */
async function pumpStdin(t, pid, input, pty, signal) {
    const opts = signal ? { signal } : {};
    try {
        for await (const chunk of chunks(input)) {
            if (chunk.length > 0)
                await sendInput(t, { pid }, chunk, pty, opts);
        }
        if (!pty)
            await unary(t, 'process.Process/CloseStdin', { process: { pid } }, opts);
    }
    catch {
        // See above.
    }
}
/** chunks yields the bytes of a BinaryInput. */
export async function* chunks(input) {
    if (typeof input === 'string')
        yield new TextEncoder().encode(input);
    else if (input instanceof Uint8Array)
        yield input;
    else if (input instanceof ArrayBuffer)
        yield new Uint8Array(input);
    else if (input instanceof Blob)
        yield* input.stream();
    else
        yield* input;
}
function toBytes(data) {
    return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}
/** link aborts ctrl when signal aborts; it returns the function that unlinks them. */
function link(signal, ctrl) {
    if (!signal)
        return () => { };
    if (signal.aborted) {
        ctrl.abort(signal.reason);
        return () => { };
    }
    const on = () => ctrl.abort(signal.reason);
    signal.addEventListener('abort', on, { once: true });
    return () => signal.removeEventListener('abort', on);
}
/**
 * drainAfterExit reads what follows a process's exit event (the end of the
 * stream, then of the HTTP body) in the background, a few events and a
 * second at most, then closes the stream: a response cancelled before its
 * end takes its connection along, and the next call would dial a new one.
 */
function drainAfterExit(events) {
    void (async () => {
        const timer = setTimeout(() => void events.return(undefined).catch(() => { }), 1000);
        try {
            for (let i = 0; i < 4; i++)
                if ((await events.next()).done)
                    break;
        }
        catch {
            // the stream broke after the exit: nothing to report
        }
        finally {
            clearTimeout(timer);
            await events.return(undefined).catch(() => { });
        }
    })();
}
