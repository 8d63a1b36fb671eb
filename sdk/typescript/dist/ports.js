// URLs of ports inside a sandbox, served by den's sandbox traffic listener
// (E2B_SANDBOX_URL): http://<port>-<sandbox id>.<domain>:<listener port>/,
// authorised by the sandbox's access token in X-Access-Token, or by a
// signed URL, or by nothing for a public port (see docs/api.md, Ports as
// URLs). den's /v1 API does not return the access token: like `den port`,
// the SDK reads it from the E2B facade's GET /sandboxes/{id}, which den
// serves on its API listener and which takes den's API keys.
import { createHmac } from 'node:crypto';
import { DenError } from './errors.js';
import { seg } from './transport.js';
/** Query parameters of a signed port URL (rest.PortSignatureParam, rest.PortExpiresParam). */
const signatureParam = 'den_signature';
const expiresParam = 'den_expires';
/** portSignature is rest.PortSignature: "v1_" + base64url(HMAC-SHA256(token, "port:<id>:<port>:<expires>")). */
export function portSignature(token, id, port, expires) {
    const mac = createHmac('sha256', token).update(`port:${id}:${port}:${expires}`).digest('base64url');
    return `v1_${mac}`;
}
/** portUrl builds the URL of port of the sandbox idOrName. */
export async function portUrl(t, sandboxUrl, idOrName, port, opts = {}) {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new DenError(`invalid port ${port}: want 1 to 65535`);
    if (!sandboxUrl) {
        throw new DenError('the sandbox traffic address is unknown: set E2B_SANDBOX_URL or the client option sandboxUrl (den up writes it to <data-dir>/env)');
    }
    const base = new URL(sandboxUrl);
    const res = await t.request('GET', `/sandboxes/${seg(idOrName)}`, { headers: { Accept: 'application/json' }, signal: opts.signal });
    const sb = (await res.json());
    if (!sb.sandboxID || !sb.envdAccessToken)
        throw new DenError(`get sandbox ${idOrName}: the server returned no access token`);
    const host = `${port}-${sb.sandboxID}.${sb.domain || 'localhost'}${base.port ? `:${base.port}` : ''}`;
    const u = new URL(`${base.protocol}//${host}/`);
    const auth = { 'X-Access-Token': sb.envdAccessToken };
    const routed = { 'E2b-Sandbox-Id': sb.sandboxID, 'E2b-Sandbox-Port': String(port) };
    const listenerUrl = `${base.protocol}//${base.host}/`;
    if (opts.signedFor === undefined) {
        return { url: u.toString(), headers: auth, listenerUrl, listenerHeaders: { ...routed, ...auth } };
    }
    if (!(opts.signedFor > 0))
        throw new DenError(`signedFor ${opts.signedFor}: want a positive number of seconds`);
    const expires = Math.floor(Date.now() / 1000) + Math.ceil(opts.signedFor);
    const q = new URLSearchParams({ [signatureParam]: portSignature(sb.envdAccessToken, sb.sandboxID, port, expires), [expiresParam]: String(expires) });
    return { url: `${u.toString()}?${q}`, headers: {}, listenerUrl: `${listenerUrl}?${q}`, listenerHeaders: routed };
}
