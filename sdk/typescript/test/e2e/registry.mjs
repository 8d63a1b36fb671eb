// A minimal OCI distribution registry on loopback, in memory, for the
// pull and push tests: the routes a registry client needs to push a
// manifest and its blobs and to pull them back.
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'

/** startRegistry serves a registry on 127.0.0.1 and returns its host:port and a close function. */
export async function startRegistry() {
  const blobs = new Map() // digest -> Buffer
  const manifests = new Map() // repo@ref and repo@digest -> { body, type, digest }
  const uploads = new Map() // id -> Buffer[]
  const server = createServer(async (req, res) => {
    const chunks = []
    for await (const c of req) chunks.push(c)
    const body = Buffer.concat(chunks)
    const url = new URL(req.url, 'http://registry')
    const send = (status, headers = {}, data) => {
      res.writeHead(status, headers)
      res.end(req.method === 'HEAD' ? undefined : data)
    }
    const notFound = () => send(404, { 'Content-Type': 'application/json' }, JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'not found' }] }))
    if (url.pathname === '/v2/' || url.pathname === '/v2') return send(200, { 'Content-Type': 'application/json' }, '{}')
    let m = /^\/v2\/(.+)\/blobs\/uploads\/(.*)$/.exec(url.pathname)
    if (m) {
      const [, repo, id] = m
      if (req.method === 'POST') {
        const nid = randomBytes(8).toString('hex')
        uploads.set(nid, [])
        return send(202, { Location: `/v2/${repo}/blobs/uploads/${nid}`, 'Range': '0-0', 'Content-Length': '0' })
      }
      const parts = uploads.get(id)
      if (!parts) return notFound()
      parts.push(body)
      if (req.method === 'PATCH') {
        const size = parts.reduce((n, p) => n + p.length, 0)
        return send(202, { Location: `/v2/${repo}/blobs/uploads/${id}`, Range: `0-${Math.max(0, size - 1)}`, 'Content-Length': '0' })
      }
      if (req.method === 'PUT') {
        const data = Buffer.concat(parts)
        const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
        if (digest !== url.searchParams.get('digest')) return send(400, {}, 'digest mismatch')
        blobs.set(digest, data)
        uploads.delete(id)
        return send(201, { Location: `/v2/${repo}/blobs/${digest}`, 'Docker-Content-Digest': digest, 'Content-Length': '0' })
      }
    }
    m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname)
    if (m) {
      const data = blobs.get(m[2])
      if (!data) return notFound()
      return send(200, { 'Content-Length': String(data.length), 'Docker-Content-Digest': m[2], 'Content-Type': 'application/octet-stream' }, data)
    }
    m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname)
    if (m) {
      const [, repo, ref] = m
      if (req.method === 'PUT') {
        const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
        const entry = { body, type: req.headers['content-type'], digest }
        manifests.set(`${repo}@${ref}`, entry)
        manifests.set(`${repo}@${digest}`, entry)
        return send(201, { 'Docker-Content-Digest': digest, Location: `/v2/${repo}/manifests/${digest}`, 'Content-Length': '0' })
      }
      const entry = manifests.get(`${repo}@${ref}`)
      if (!entry) return notFound()
      return send(200, { 'Content-Type': entry.type, 'Docker-Content-Digest': entry.digest, 'Content-Length': String(entry.body.length) }, entry.body)
    }
    notFound()
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  return { host: `127.0.0.1:${server.address().port}`, manifests, close: () => new Promise((r) => server.close(r)) }
}
