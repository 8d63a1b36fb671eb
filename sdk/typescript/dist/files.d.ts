import { type GuestTarget } from './connect.js';
import type { Commands } from './commands.js';
import { type BinaryInput, type CallOptions } from './transport.js';
/** The type of a filesystem entry. */
export type FileType = 'file' | 'dir' | 'symlink' | 'other';
/** A file or directory in a sandbox. */
export interface EntryInfo {
    name: string;
    type: FileType;
    /** Absolute path. */
    path: string;
    size: number;
    /** Permission and type bits, as Go's fs.FileMode. */
    mode: number;
    /** ls-style permissions, e.g. "-rw-r--r--". */
    permissions: string;
    owner: string;
    group: string;
    modifiedTime?: Date;
    symlinkTarget?: string;
}
/** What a write stored. */
export interface WriteInfo {
    path: string;
    name: string;
    type: string;
}
/** What happened to a watched entry. */
export type EventOp = 'create' | 'write' | 'remove' | 'rename' | 'chmod';
/** A change in a watched directory. */
export interface FilesystemEvent {
    /** The entry's path relative to the watched directory. */
    name: string;
    op: EventOp;
    /** The entry after the change, when the guest sent it. */
    entry?: EntryInfo;
}
interface WireEntry {
    name?: string;
    type?: string;
    path?: string;
    size?: string | number;
    mode?: number;
    permissions?: string;
    owner?: string;
    group?: string;
    modifiedTime?: string;
    symlinkTarget?: string;
}
/** Options of the file calls: who acts. */
export interface FileOptions extends CallOptions {
    /** Acts as this user of the sandbox; default the handle's user, else the sandbox's. */
    user?: string;
}
/** Files reads and changes the files of one sandbox (sandbox.files). */
export declare class Files {
    private readonly guest;
    private readonly commands;
    /** @internal */
    constructor(guest: (user?: string) => GuestTarget, commands: Commands);
    private files;
    /**
     * readStream opens the file at path (relative paths are relative to the
     * user's home) and returns its content as a stream.
     */
    readStream(path: string, opts?: FileOptions): Promise<ReadableStream<Uint8Array>>;
    /** read returns the bytes of the file at path. */
    read(path: string, opts?: FileOptions): Promise<Uint8Array>;
    /** readText returns the file at path decoded as UTF-8. */
    readText(path: string, opts?: FileOptions): Promise<string>;
    /**
     * write creates or replaces the file at path with data (text, bytes, a
     * Blob or a stream, sent as it is read), creating missing parent
     * directories. The file is replaced only once all of data arrived.
     */
    write(path: string, data: BinaryInput, opts?: FileOptions): Promise<WriteInfo>;
    /** list lists the directory at path, descending depth levels (default 1: its own entries). */
    list(path: string, opts?: FileOptions & {
        depth?: number;
    }): Promise<EntryInfo[]>;
    /** stat describes the entry at path (a symbolic link itself, not its target). */
    stat(path: string, opts?: FileOptions): Promise<EntryInfo>;
    /** exists reports whether path exists. */
    exists(path: string, opts?: FileOptions): Promise<boolean>;
    /** makeDir creates the directory at path with its parents; AlreadyExistsError when path exists. */
    makeDir(path: string, opts?: FileOptions): Promise<EntryInfo>;
    /** remove removes the file or directory (with its contents) at path. */
    remove(path: string, opts?: FileOptions): Promise<void>;
    /** move renames src to dst and describes the entry at its new place. */
    move(src: string, dst: string, opts?: FileOptions): Promise<EntryInfo>;
    /**
     * watch starts watching the directory at path (with its subdirectories
     * when recursive) and resolves once the guest watches, so that changes
     * made after it resolves are reported. Iterate the watcher for the
     * events; close() (or leaving the loop, or the signal) ends it.
     */
    watch(path: string, opts?: FileOptions & {
        recursive?: boolean;
    }): Promise<Watcher>;
    /**
     * uploadDir copies the local directory localDir (its files, directories
     * and symbolic links) into remoteDir in the sandbox, creating it. The
     * directory travels as one tar archive, written to a temporary file in
     * the sandbox's /tmp and unpacked there by the sandbox's tar (busybox
     * and every common image have one).
     */
    uploadDir(localDir: string, remoteDir: string, opts?: FileOptions): Promise<void>;
    /**
     * downloadDir copies the directory remoteDir of the sandbox into the
     * local directory localDir (created when missing): the sandbox's tar
     * packs it and its output is unpacked here as it arrives. Entries that
     * would land outside localDir are refused.
     */
    downloadDir(remoteDir: string, localDir: string, opts?: FileOptions): Promise<void>;
}
interface WireWatchEvent {
    start?: Record<string, never>;
    filesystem?: {
        name?: string;
        type?: string;
        entry?: WireEntry;
    };
    keepalive?: Record<string, never>;
}
/** Watcher streams the changes of a watched directory; iterate it once. */
export declare class Watcher implements AsyncIterable<FilesystemEvent> {
    private readonly stream;
    private readonly abort;
    private readonly release;
    /** @internal */
    constructor(stream: AsyncGenerator<WireWatchEvent>, abort: AbortController, release: () => void);
    [Symbol.asyncIterator](): AsyncGenerator<FilesystemEvent>;
    /** close stops the watch; an iteration in progress ends. Safe to call more than once. */
    close(): void;
}
/**
 * extractTar unpacks a tar stream into dir. Names must stay inside dir (no
 * absolute names, no ".."); symbolic links are made last, so that no entry
 * is written through one the archive made.
 */
export declare function extractTar(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, dir: string): Promise<void>;
export {};
