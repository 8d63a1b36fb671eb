"""The I/O-free core that both faces share.

Every operation of the SDK is written once, as a generator (an *op*) that
yields :class:`Call` values and receives their results; it returns the
operation's value. A Call is one of five primitives:

- ``unary``: an HTTP request whose whole answer is the result (decoded JSON,
  bytes, or nothing);
- ``open``: an HTTP request whose answer is streamed; the result is a handle;
- ``read``: the next chunk of an opened answer (``b""`` at its end);
- ``close``: close an opened answer;
- ``callback``: call a user's function (the async face awaits what it
  returns when that is awaitable).

The sync face runs ops with :func:`run_sync` over an ``httpx.Client``, the
async face with :func:`run_async` over an ``httpx.AsyncClient``; those two
functions and the two ``execute`` methods are all that differs. An error of
a call is thrown into the op, which handles it (``kill`` swallows
``NotFoundError``) or lets it propagate. When an op fails, the runner closes
the answers it opened and left open; an op that succeeds closes its answers
or returns them to its caller, who then owns them.
"""

from __future__ import annotations

import base64
import inspect
import json
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from . import errors

T = TypeVar("T")

Op = Generator["Call", Any, T]
"""An operation: yields Calls, receives their results, returns its value."""

# Statuses retried with backoff (the server's rate limit and capacity, a
# guest agent or registry that cannot be reached now). Nothing else is.
RETRY_STATUSES = frozenset({429, 503})

# A streamed request body: chunks of bytes, read as they are sent.
BodyStream = Iterable[bytes] | AsyncIterable[bytes]

Kind = Literal["unary", "open", "read", "close", "callback"]


@dataclass(frozen=True)
class Call:
    """One primitive step of an op (see the module doc)."""

    kind: Kind = "unary"
    method: str = "GET"
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()
    json: Any = None
    content: bytes | None = None
    stream: BodyStream | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # unary: what the result is
    expect: Literal["json", "bytes", "none"] = "json"
    # open: the read timeout in seconds for a stream that may be quiet (None:
    # no limit); "default" keeps the client's
    read_timeout: float | None | Literal["default"] = "default"
    # read, close: the handle an open returned
    handle: Any = None
    # callback: fn(*args)
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()

    @property
    def replayable(self) -> bool:
        """Whether the request may be sent again (retries): no streamed body."""
        return self.stream is None

    def body(self) -> tuple[bytes | None, dict[str, str]]:
        """The request body and the Content-Type it needs."""
        if self.content is not None:
            return self.content, {}
        if self.json is not None:
            return json.dumps(self.json, separators=(",", ":")).encode(), {"Content-Type": "application/json"}
        return None, {}


def read(handle: Any) -> Call:
    return Call(kind="read", handle=handle)


def close(handle: Any) -> Call:
    return Call(kind="close", handle=handle)


def callback(fn: Callable[..., Any], *args: Any) -> Call:
    return Call(kind="callback", fn=fn, args=args)


def seg(s: str) -> str:
    """One escaped path segment: an image name's slashes become %2F."""
    if not isinstance(s, str) or not s:
        raise ValueError(f"want a non-empty ID or name, got {s!r}")
    return quote(s, safe=":@")


def q(**kw: Any) -> tuple[tuple[str, str], ...]:
    """Query parameters, leaving out None and False; lists repeat the key."""
    out: list[tuple[str, str]] = []
    for k, v in kw.items():
        if v is None or v is False:
            continue
        if isinstance(v, (list, tuple)):
            out.extend((k, str(x)) for x in v)
        elif v is True:
            out.append((k, "1"))
        else:
            out.append((k, str(v)))
    return tuple(out)


def basic_user(user: str) -> str:
    """The envd user selection header value: Basic base64(user + ":")."""
    return "Basic " + base64.b64encode((user + ":").encode()).decode()


def user_headers(user: str | None) -> tuple[tuple[str, str], ...]:
    return (("Authorization", basic_user(user)),) if user else ()


def parse_unary(call: Call, status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The result of a unary call's answer; raises its APIError when not 2xx."""
    if not 200 <= status < 300:
        raise errors.error_from_body(status, body, headers)
    if call.expect == "none" or status == 204:
        return None
    if call.expect == "bytes":
        return body
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError as e:
        raise errors.ProtocolError(f"{call.method} {call.path}: the server answered malformed JSON: {e}") from None


@dataclass
class RetryPolicy:
    """Backoff for answers of RETRY_STATUSES (429, 503): exponential from
    ``base`` seconds with jitter, capped at ``cap``, at most ``max_retries``
    times. A server's Retry-After is honoured up to ``max_wait`` seconds;
    beyond that the error is raised at once. Requests with a streamed body
    are never retried (the body is gone)."""

    max_retries: int = 3
    base: float = 0.25
    cap: float = 8.0
    max_wait: float = 30.0
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, status: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number attempt+1, or None to give up."""
        if status not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        backoff: float = min(self.cap, self.base * 2.0**attempt)
        return backoff * (0.5 + self.rand() / 2)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    v = headers.get("retry-after")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None


def run_sync(execute: Callable[[Call], Any], close_handle: Callable[[Any], None], op: Op[T]) -> T:
    """Run op to its end, answering each Call with execute(call)."""
    opened: list[Any] = []
    done = False
    try:
        call = next(op)
        while True:
            try:
                result = execute(call)
                _track(opened, call, result)
                if call.kind == "callback" and inspect.isawaitable(result):
                    _discard(result)
                    raise TypeError(f"callback {call.fn!r} returned an awaitable: pass async callbacks to the async face (den.AsyncClient)")
            except Exception as e:  # the op decides: handle or propagate
                call = op.throw(e)
            else:
                call = op.send(result)
    except StopIteration as stop:
        done = True
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()
        if not done:
            for h in opened:
                _quietly(close_handle, h)


async def run_async(execute: Callable[[Call], Awaitable[Any]], close_handle: Callable[[Any], Awaitable[None]], op: Op[T]) -> T:
    """Run op to its end, answering each Call with await execute(call)."""
    opened: list[Any] = []
    done = False
    try:
        call = next(op)
        while True:
            try:
                result = await execute(call)
                _track(opened, call, result)
                if call.kind == "callback" and inspect.isawaitable(result):
                    result = await result
            except Exception as e:
                call = op.throw(e)
            else:
                call = op.send(result)
    except StopIteration as stop:
        done = True
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()
        if not done:
            for h in opened:
                try:
                    await close_handle(h)
                except Exception:
                    pass


def _track(opened: list[Any], call: Call, result: Any) -> None:
    if call.kind == "open":
        opened.append(result)
    elif call.kind == "close" and call.handle in opened:
        opened.remove(call.handle)


def _quietly(fn: Callable[[Any], None], arg: Any) -> None:
    try:
        fn(arg)
    except Exception:
        pass


def _discard(aw: Any) -> None:
    if inspect.iscoroutine(aw):
        aw.close()


def value(v: T) -> Op[T]:
    """An op that makes no call and returns v."""
    return v
    yield  # pragma: no cover  (makes this a generator)
