import { type GuestTarget } from './connect.js';
import type { BinaryInput, CallOptions } from './transport.js';
/** A process of a sandbox: its PID, or the tag it was started with. */
export type ProcessSelector = number | {
    pid: number;
} | {
    tag: string;
};
/** The signals the guest protocol carries. */
export type Signal = 'SIGTERM' | 'SIGKILL';
/** Options of a command. */
export interface CommandOptions extends CallOptions {
    /** Working directory; default the user's home. */
    cwd?: string;
    /** Variables added to the process's environment. */
    envs?: Record<string, string>;
    /** Runs as this user of the sandbox; default the handle's user, else the sandbox's. */
    user?: string;
    /** Names the process so that connect, signal and sendInput can find it by { tag }. */
    tag?: string;
    /** Kills the process (SIGKILL) after this long and rejects with TimeoutError; default none. */
    timeoutMs?: number;
    /** Called with each piece of standard output as it arrives, decoded as UTF-8. */
    onStdout?: (data: string) => void;
    /** Called with each piece of standard error as it arrives, decoded as UTF-8. */
    onStderr?: (data: string) => void;
    /**
     * Input for the process's stdin, sent as it is read; stdin is closed at
     * its end. Without it the process has no stdin.
     */
    stdin?: BinaryInput;
}
/** Options of commands.stream, which hands the output to its loop instead of callbacks. */
export type StreamOptions = Omit<CommandOptions, 'timeoutMs' | 'onStdout' | 'onStderr'>;
/** How a process ended, with its collected output. */
export interface CommandResult {
    /** The exit code; -1 when a signal killed the process. */
    exitCode: number;
    stdout: string;
    stderr: string;
    /** True when the process exited on its own (not by a signal). */
    exited: boolean;
    /** The guest's description, e.g. "exit status 1" or "signal: killed". */
    status: string;
    /** The guest's error text when the process could not run. */
    error?: string;
    pid: number;
}
/** One event of a process's stream (commands.stream). */
export type CommandEvent = {
    type: 'start';
    pid: number;
} | {
    type: 'stdout';
    data: Uint8Array;
} | {
    type: 'stderr';
    data: Uint8Array;
} | {
    type: 'pty';
    data: Uint8Array;
} | {
    type: 'exit';
    exitCode: number;
    exited: boolean;
    status: string;
    error?: string;
};
/** A running process as the guest lists it. */
export interface ProcessInfo {
    pid: number;
    tag?: string;
    cmd: string;
    args: string[];
    envs: Record<string, string>;
    cwd?: string;
}
/** The size of a pseudo-terminal in character cells. */
export interface PtySize {
    cols: number;
    rows: number;
}
/** Commands runs and manages processes of one sandbox (sandbox.commands). */
export declare class Commands {
    private readonly guest;
    /** @internal */
    constructor(guest: (user?: string) => GuestTarget);
    /**
     * run runs cmd, waits for it to end and returns its exit code and
     * output. A string runs with /bin/sh -c; an array is the program and its
     * arguments. A non-zero exit is a result, not an error.
     */
    run(cmd: string | readonly string[], opts?: CommandOptions): Promise<CommandResult>;
    /**
     * stream runs cmd and yields its events: start (with the PID), stdout
     * and stderr chunks as they arrive, then exit. Leaving the loop early
     * stops reading but does not kill the process.
     */
    stream(cmd: string | readonly string[], opts?: StreamOptions): AsyncGenerator<CommandEvent>;
    /**
     * start starts cmd in the background and returns its handle once it runs
     * (its PID known). Output is collected and passed to the callbacks until
     * the handle's wait() resolves.
     */
    start(cmd: string | readonly string[], opts?: CommandOptions & {
        pty?: PtySize;
        onPty?: (data: Uint8Array) => void;
    }): Promise<CommandHandle>;
    /**
     * connect attaches to a running process: the returned handle receives
     * the output produced from now on and its wait() resolves when the
     * process ends.
     */
    connect(sel: ProcessSelector, opts?: Pick<CommandOptions, 'onStdout' | 'onStderr' | 'timeoutMs' | 'signal'> & {
        onPty?: (data: Uint8Array) => void;
    }): Promise<CommandHandle>;
    /** list lists the processes the guest agent started that still run. */
    list(opts?: CallOptions): Promise<ProcessInfo[]>;
    /** signal sends SIGTERM or SIGKILL to a process. */
    signal(sel: ProcessSelector, signal: Signal, opts?: CallOptions): Promise<void>;
    /** kill sends SIGKILL to a process. */
    kill(sel: ProcessSelector, opts?: CallOptions): Promise<void>;
    /** sendInput writes data to the stdin of a process started with stdin. */
    sendInput(sel: ProcessSelector, data: string | Uint8Array, opts?: CallOptions): Promise<void>;
    /** closeStdin closes a process's stdin, so that it reads EOF. */
    closeStdin(sel: ProcessSelector, opts?: CallOptions): Promise<void>;
}
/** Options of a pseudo-terminal. */
export interface PtyOptions extends Omit<CommandOptions, 'stdin' | 'onStdout' | 'onStderr'> {
    cols: number;
    rows: number;
    /** The program and its arguments; default a login shell, /bin/sh -l. */
    cmd?: string | readonly string[];
    /** Called with the terminal's output as it arrives. */
    onData?: (data: Uint8Array) => void;
}
/** Pty runs processes on pseudo-terminals (sandbox.pty). */
export declare class Pty {
    private readonly commands;
    private readonly guest;
    /** @internal */
    constructor(commands: Commands, guest: (user?: string) => GuestTarget);
    /** create starts a process on a new terminal of the given size and returns its handle. */
    create(opts: PtyOptions): Promise<CommandHandle>;
    /** sendInput types data on a process's terminal (Ctrl-C is "\x03"). */
    sendInput(sel: ProcessSelector, data: string | Uint8Array, opts?: CallOptions): Promise<void>;
    /** resize changes the size of a process's terminal. */
    resize(sel: ProcessSelector, size: PtySize, opts?: CallOptions): Promise<void>;
    /** kill sends SIGKILL to the process of a terminal. */
    kill(sel: ProcessSelector, opts?: CallOptions): Promise<void>;
}
/**
 * CommandHandle is a process started in the background (commands.start,
 * pty.create) or attached to (commands.connect). Its output is read in the
 * background and collected; wait() resolves when the process ends.
 */
export declare class CommandHandle {
    private readonly t;
    /** The process's PID. */
    readonly pid: number;
    private out;
    private err;
    private readonly done;
    private readonly abort;
    private constructor();
    /** @internal */
    static open(t: GuestTarget, procedure: string, req: object, opts: CommandOptions & {
        onPty?: (data: Uint8Array) => void;
    }): Promise<CommandHandle>;
    private collect;
    /** The standard output (with a terminal: its output) collected so far. */
    get stdout(): string;
    /** The standard error collected so far. */
    get stderr(): string;
    /** wait resolves with the result when the process ends; a non-zero exit is not an error. */
    wait(): Promise<CommandResult>;
    /** kill sends SIGKILL to the process. */
    kill(opts?: CallOptions): Promise<void>;
    /** signal sends a signal to the process. */
    signal(signal: Signal, opts?: CallOptions): Promise<void>;
    /** sendStdin writes to the process's stdin (it must have been started with stdin). */
    sendStdin(data: string | Uint8Array, opts?: CallOptions): Promise<void>;
    /** closeStdin closes the process's stdin. */
    closeStdin(opts?: CallOptions): Promise<void>;
    /** sendInput types on the process's terminal (pty.create). */
    sendInput(data: string | Uint8Array, opts?: CallOptions): Promise<void>;
    /** resize changes the size of the process's terminal (pty.create). */
    resize(size: PtySize, opts?: CallOptions): Promise<void>;
    /**
     * disconnect stops receiving the output; the process keeps running and
     * wait() rejects with an AbortError. commands.connect attaches again.
     */
    disconnect(): void;
}
/** chunks yields the bytes of a BinaryInput. */
export declare function chunks(input: BinaryInput): AsyncGenerator<Uint8Array>;
