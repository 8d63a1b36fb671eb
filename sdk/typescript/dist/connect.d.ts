import type { CallOptions, Transport } from './transport.js';
/** A guest's base URL and the headers its requests carry. */
export interface GuestTarget {
    transport: Transport;
    /** Absolute URL of the sandbox's envd proxy, without a trailing slash. */
    base: string;
    /** The envd user selection (Authorization: Basic), when set. */
    headers: Record<string, string>;
}
/** unary calls procedure ("process.Process/List") with msg. */
export declare function unary<Res>(t: GuestTarget, procedure: string, msg: unknown, opts?: CallOptions): Promise<Res>;
/**
 * serverStream calls a server-streaming procedure with msg and yields its
 * messages. It throws the stream's error as an APIError, and a DenError
 * when the stream ends without its end message.
 */
export declare function serverStream<Res>(t: GuestTarget, procedure: string, msg: unknown, opts?: CallOptions): AsyncGenerator<Res>;
/** envelope frames one JSON message. */
export declare function envelope(msg: unknown, flags?: number): Uint8Array;
/** Most bytes one message of a guest may take (as sdk/go's MaxGuestMessage). */
export declare const maxGuestMessage: number;
/** envelopes splits a Connect stream body into its envelopes. */
export declare function envelopes(body: AsyncIterable<Uint8Array>): AsyncGenerator<{
    flags: number;
    data: Uint8Array;
}>;
/** basicUser is the envd user selection header value for user. */
export declare function basicUser(user: string): string;
/** b64 encodes bytes for a protobuf JSON bytes field. */
export declare function b64(data: Uint8Array): string;
/** unb64 decodes a protobuf JSON bytes field. */
export declare function unb64(s: string | undefined): Uint8Array;
