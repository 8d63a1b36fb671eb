/** A tar entry's header. */
export interface TarHeader {
    /** Slash-separated path; directories end without "/". */
    name: string;
    type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';
    /** Permission bits. */
    mode: number;
    size: number;
    mtime: Date;
    /** Target of a symbolic or hard link. */
    linkname?: string;
}
/** One entry to write; a file's content comes from path or data. */
export interface TarEntry extends Omit<TarHeader, 'size'> {
    size?: number;
    /** Local file whose bytes are the content (read when written). */
    path?: string;
    data?: Uint8Array;
}
/**
 * tarStream yields a tar archive of entries, reading file contents as it
 * goes; owners are left out (uid and gid 0, no names).
 */
export declare function tarStream(entries: AsyncIterable<TarEntry> | Iterable<TarEntry>): AsyncGenerator<Uint8Array>;
/**
 * dirEntries walks a local directory (not following symbolic links) and
 * yields its entries with names relative to it, parents before children,
 * in name order. skip, when given, leaves out an entry (and, for a
 * directory, may return "prune" to skip its contents as well).
 */
export declare function dirEntries(root: string, skip?: (rel: string, isDir: boolean) => boolean | 'prune', rel?: string): AsyncGenerator<TarEntry>;
/** One entry read from an archive; body must be consumed (or skipped) before the next. */
export interface TarReadEntry {
    header: TarHeader;
    body: AsyncGenerator<Uint8Array>;
}
/** readTar yields the entries of a tar archive as it arrives. */
export declare function readTar(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<TarReadEntry>;
