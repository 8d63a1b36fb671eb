import { type BinaryInput, type CallOptions, type Transport } from './transport.js';
import type { BuildResult, Image, ImageDetails, ImageProgress, PruneImagesResult } from './types.gen.js';
/** Options of a pull or push. */
export interface RegistryOptions extends CallOptions {
    /** Allows plain HTTP to the registry (loopback and private addresses use it anyway). */
    insecure?: boolean;
    /** Log in to the registry; default anonymous. */
    username?: string;
    password?: string;
    /** Called with each progress report, in order. */
    onProgress?: (p: ImageProgress) => void;
}
/** Options of a build. */
export interface BuildOptions extends CallOptions {
    /** Names to store the image under. */
    tag?: string | readonly string[];
    /** The Dockerfile: relative to the context directory, or absolute; default "Dockerfile" in it. */
    dockerfile?: string;
    /** Values of the Dockerfile's ARGs. */
    buildArgs?: Record<string, string>;
    /** The stage to build; default the last. */
    target?: string;
    /** Build every step afresh. */
    noCache?: boolean;
    /** Pull base images even when the server has them. */
    pull?: boolean;
    /** Called with each line of the build's output as it comes. */
    onLog?: (line: string) => void;
}
/** Images manages the server's images (client.images). Most changes need an admin key. */
export declare class Images {
    private readonly t;
    /** @internal */
    constructor(t: Transport);
    /** list lists the images. */
    list(opts?: CallOptions): Promise<Image[]>;
    /** get returns the image with the given name, ID or unique ID prefix. */
    get(ref: string, opts?: CallOptions): Promise<Image>;
    /** inspect returns the image with its layers, configuration and history. */
    inspect(ref: string, opts?: CallOptions): Promise<ImageDetails>;
    /** tag gives the image ref a further name and returns it under that name. */
    tag(ref: string, name: string, opts?: CallOptions): Promise<Image>;
    /** remove removes a name of an image (by name) or every name of it (by ID). */
    remove(ref: string, opts?: CallOptions): Promise<void>;
    /** prune deletes the layers and blobs no image uses. */
    prune(opts?: CallOptions): Promise<PruneImagesResult>;
    /**
     * import uploads an image archive (docker-archive as `docker save`
     * writes it, or an OCI-layout tar), streamed as it is read, and stores
     * it as name (default: the name in the archive).
     */
    import(archive: BinaryInput, opts?: CallOptions & {
        name?: string;
    }): Promise<Image>;
    /**
     * export returns the image as a tar stream: "docker-archive" (default;
     * `docker load` reads it) or "oci" (an OCI image layout). import reads
     * either back to the same image ID.
     */
    export(ref: string, opts?: CallOptions & {
        format?: 'docker-archive' | 'oci';
    }): Promise<ReadableStream<Uint8Array>>;
    /** pull has the server pull ref (e.g. "docker.io/library/alpine:3.20") and store it under that name. */
    pull(ref: string, opts?: RegistryOptions & {
        platform?: string;
    }): Promise<Image>;
    /** push pushes the stored image to the registry reference dest and returns the pushed manifest's digest. */
    push(image: string, dest: string, opts?: RegistryOptions): Promise<string>;
    private events;
    /**
     * build sends the directory contextDir (less what its .dockerignore
     * leaves out) as the build context, streamed as it is read, and has the
     * server build the image its Dockerfile describes. A failed step throws
     * an APIError whose message names the Dockerfile line.
     */
    build(contextDir: string, opts?: BuildOptions): Promise<BuildResult>;
}
