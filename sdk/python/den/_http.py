"""What the two drivers share about httpx: building requests from Calls,
the client settings, and turning transport failures into DenErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import httpx

from . import errors
from ._core import Call

try:
    VERSION = metadata.version("den-sdk")
except metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0.0.0"

USER_AGENT = f"den-sdk-python/{VERSION}"

# Connections a client keeps at most: enough for a hundred sandboxes' worth
# of concurrent streams over HTTP/1.1 (HTTP/2 multiplexes them).
MAX_CONNECTIONS = 512
MAX_KEEPALIVE = 128


def client_kwargs(base_url: str, api_key: str | None, timeout: float | None, http2: bool) -> dict[str, Any]:
    """The keyword arguments of httpx.Client / httpx.AsyncClient.

    http2=True speaks HTTP/2: negotiated over TLS, with prior knowledge (h2c,
    which den serves) over plain http. The default is HTTP/1.1: over
    httpcore's HTTP/2, 100 concurrent sandboxes' execs took ten times as
    long in our benchmark, and bulk data moved at half the speed
    (docs/sdk-python.md).
    """
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["X-API-Key"] = api_key
    kw: dict[str, Any] = {
        "base_url": base_url,
        "headers": headers,
        "timeout": httpx.Timeout(timeout),
        "limits": httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
        "follow_redirects": False,
        "trust_env": False,
        "http2": bool(http2),
    }
    if http2 and base_url.startswith("http://"):
        kw["http1"] = False  # h2c with prior knowledge
    return kw


def request_args(call: Call, default_timeout: float | None) -> dict[str, Any]:
    """The arguments of client.build_request for a unary or open Call."""
    content, ctype = call.body()
    headers = dict(ctype)
    headers.update(call.headers)
    args: dict[str, Any] = {"method": call.method, "url": call.path, "headers": headers}
    if call.query:
        args["params"] = list(call.query)
    if content is not None:
        args["content"] = content
    if call.read_timeout != "default":
        args["timeout"] = httpx.Timeout(default_timeout, read=call.read_timeout)
    return args


@contextmanager
def transport_errors(call: Call) -> Iterator[None]:
    """Turn httpx's transport failures into DenErrors naming the request."""
    try:
        yield
    except httpx.TimeoutException as e:
        raise errors.TimeoutError(f"{call.method} {call.path}: {type(e).__name__}: {e or 'timed out'}") from e
    except httpx.TransportError as e:
        raise errors.ConnectionError(f"{call.method} {call.path}: {type(e).__name__}: {e}") from e
