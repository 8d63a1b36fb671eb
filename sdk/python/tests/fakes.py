"""Test servers on loopback: a minimal OCI registry (what den's push and pull
speak) and a server that answers a scripted list of statuses.

They run on threads of the test process; the SDK under test uses none.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


class Registry:
    """An in-memory registry of the OCI distribution API: blobs (monolithic
    and chunked uploads) and manifests by tag or digest. requests counts the
    requests by method and kind, to assert what a client did."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def route(self) -> None:
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                body = _read_body(self) if self.command in ("POST", "PUT", "PATCH") else b""
                with reg.lock:
                    reg.requests.append(f"{self.command} {path}")
                if path in ("/v2/", "/v2"):
                    return self.send(200, b"{}", {"Content-Type": "application/json"})
                if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/?", path):
                    if "digest" in params:
                        return self.finish_blob(m.group(1), body, params["digest"])
                    uid = uuid.uuid4().hex
                    reg.uploads[uid] = bytearray(body)
                    return self.send(202, headers={"Location": f"/v2/{m.group(1)}/blobs/uploads/{uid}", "Range": "0-0", "Docker-Upload-UUID": uid})
                if m := re.fullmatch(r"/v2/(.+)/blobs/uploads/([0-9a-f]+)", path):
                    buf = reg.uploads.get(m.group(2))
                    if buf is None:
                        return self.send(404, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
                    buf += body
                    if self.command == "PATCH":
                        return self.send(202, headers={"Location": path, "Range": f"0-{max(0, len(buf) - 1)}"})
                    del reg.uploads[m.group(2)]
                    return self.finish_blob(m.group(1), bytes(buf), params.get("digest", "").replace("%3A", ":"))
                if m := re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]+)", path):
                    data = reg.blobs.get(m.group(2))
                    if data is None:
                        return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', {"Content-Type": "application/json"})
                    return self.send(200, data, {"Docker-Content-Digest": m.group(2), "Content-Type": "application/octet-stream"})
                if m := re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path):
                    name, ref = m.group(1), m.group(2)
                    if self.command == "PUT":
                        digest = "sha256:" + hashlib.sha256(body).hexdigest()
                        mt = self.headers.get("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        reg.manifests[(name, ref)] = reg.manifests[(name, digest)] = (mt, body)
                        return self.send(201, headers={"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"})
                    got = reg.manifests.get((name, ref))
                    if got is None:
                        return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', {"Content-Type": "application/json"})
                    mt, data = got
                    digest = "sha256:" + hashlib.sha256(data).hexdigest()
                    return self.send(200, data, {"Content-Type": mt, "Docker-Content-Digest": digest})
                self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', {"Content-Type": "application/json"})

            def finish_blob(self, name: str, data: bytes, digest: str) -> None:
                got = "sha256:" + hashlib.sha256(data).hexdigest()
                if got != digest:
                    return self.send(400, json.dumps({"errors": [{"code": "DIGEST_INVALID", "message": f"{got} != {digest}"}]}).encode())
                reg.blobs[digest] = data
                self.send(201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = route

        return H


class Scripted:
    """Answers each request with the next of statuses (then 200 {}) and
    records the requests' paths; 429s carry Retry-After when retry_after."""

    def __init__(self, statuses: list[int], retry_after: str | None = None):
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.paths: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        s = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                s.paths.append(self.path)
                status = s.statuses.pop(0) if s.statuses else 200
                if status == 200:
                    body = json.dumps({"version": "scripted", "node": "fake"}).encode()
                else:
                    code = {429: "resource_exhausted", 503: "unavailable", 500: "internal"}.get(status, "internal")
                    body = json.dumps({"code": code, "message": f"scripted {status}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429 and s.retry_after is not None:
                    self.send_header("Retry-After", s.retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return H


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve handler on a free loopback port; yields host:port."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()
