import { APIError } from './errors.js';
/** Options every call takes. */
export interface CallOptions {
    /** Aborts the call; the promise rejects with the signal's reason. */
    signal?: AbortSignal;
}
/** Query parameters; arrays repeat the parameter, undefined drops it. */
export type Query = Record<string, string | number | boolean | readonly string[] | undefined>;
/** Binary data the SDK sends: bytes, text, a Blob, or a stream of bytes. */
export type BinaryInput = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;
/** Settings of the transport. */
export interface TransportOptions {
    url: string;
    apiKey: string;
    /** Retries of a request answered 429 or 503; default 3. */
    maxRetries?: number;
    /** The fetch to use; default globalThis.fetch. */
    fetch?: typeof fetch;
}
export interface RequestInit2 {
    query?: Query;
    body?: BinaryInput;
    headers?: Record<string, string>;
    signal?: AbortSignal | undefined;
    /** Absolute URL to use instead of the API base plus path. */
    url?: string;
}
export declare class Transport {
    readonly url: string;
    readonly apiKey: string;
    readonly maxRetries: number;
    private readonly fetchFn;
    constructor(opts: TransportOptions);
    /** endpoint is the absolute URL of an API path (already escaped). */
    endpoint(path: string, query?: Query): string;
    /**
     * request sends one request and returns the 2xx response, whose body
     * the caller consumes. A non-2xx answer throws its APIError; 429 and 503
     * are retried with backoff when the body can be sent again.
     */
    request(method: string, path: string, init?: RequestInit2): Promise<Response>;
    private send;
    /** json sends body (an SDK object, converted to the wire's shape) and decodes the answer. */
    json<T>(method: string, path: string, body?: unknown, init?: RequestInit2): Promise<T>;
    /**
     * ndjson sends a request whose answer is an NDJSON stream (image pull,
     * push and build) and yields each line, decoded. A line with an error
     * throws its APIError.
     */
    ndjson<T>(method: string, path: string, init?: RequestInit2): AsyncGenerator<T>;
}
/** encodeQuery renders q as a query string without the "?". */
export declare function encodeQuery(q?: Query): string;
/** readError builds the APIError of a non-2xx response. */
export declare function readError(res: Response): Promise<APIError>;
/** sleep waits ms, or rejects with the signal's reason when it aborts. */
export declare function sleep(ms: number, signal?: AbortSignal): Promise<void>;
/** iterableStream is a ReadableStream over an async iterable of bytes. */
export declare function iterableStream(it: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array>;
/** lines yields the lines of a body of text, without their newlines. */
export declare function lines(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string>;
/** seg escapes one path segment: an ID, a name, an image ref (/ as %2F). */
export declare function seg(s: string | number): string;
