import { type CallOptions, type Transport } from './transport.js';
/** Where a port is reachable and what a request to it sends. */
export interface PortURL {
    /**
     * The port's URL, for browsers and curl: its host name names the port
     * and the sandbox (*.localhost resolves to the loopback in browsers and
     * curl, not in every resolver).
     */
    url: string;
    /** Headers that authorise a request to url (empty for a signed URL). */
    headers: Record<string, string>;
    /**
     * The same request addressed to the traffic listener itself, routed by
     * the E2b-Sandbox-Id and E2b-Sandbox-Port headers instead of the host
     * name, for clients that cannot resolve url's host (Node's fetch): send
     * requests to listenerUrl with listenerHeaders.
     */
    listenerUrl: string;
    listenerHeaders: Record<string, string>;
}
/** Options of a port URL. */
export interface PortURLOptions extends CallOptions {
    /** Seconds a signed URL works without the header; default: an unsigned URL. */
    signedFor?: number;
}
/** portSignature is rest.PortSignature: "v1_" + base64url(HMAC-SHA256(token, "port:<id>:<port>:<expires>")). */
export declare function portSignature(token: string, id: string, port: number, expires: number): string;
/** portUrl builds the URL of port of the sandbox idOrName. */
export declare function portUrl(t: Transport, sandboxUrl: string, idOrName: string, port: number, opts?: PortURLOptions): Promise<PortURL>;
