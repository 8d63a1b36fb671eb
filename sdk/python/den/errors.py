"""The exceptions of the den SDK.

Every error the SDK raises is a :class:`DenError`. Errors answered by the den
server or by a sandbox's guest agent are :class:`APIError` values whose class
follows the error's ``code`` (``not_found`` is :class:`NotFoundError`, and so
on); the mapping lives in one place, :func:`error_for`, as the server keeps
its own in ``internal/errdefs``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DenError",
    "ConfigError",
    "ConnectionError",
    "ProtocolError",
    "TimeoutError",
    "APIError",
    "NotFoundError",
    "ConflictError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "UnauthorizedError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "InsufficientStorageError",
    "UnavailableError",
    "UnsupportedError",
    "InternalError",
    "TooLargeError",
    "CanceledError",
    "DeadlineExceededError",
    "BuildError",
    "CommandExitError",
]


class DenError(Exception):
    """The base class of every error the SDK raises."""


class ConfigError(DenError):
    """No server URL was given, found in the environment or in den's env file."""


class ConnectionError(DenError, builtins.ConnectionError):
    """The server could not be reached, or the connection broke mid-request."""


class ProtocolError(DenError):
    """The server's answer was malformed or ended early (a stream cut short)."""


class TimeoutError(DenError, builtins.TimeoutError):
    """A deadline passed: a command's ``timeout``, or the client's HTTP timeout."""


class APIError(DenError):
    """An error answered by the den server or by a sandbox's guest agent.

    Attributes:
        code: the machine-readable code, e.g. ``"not_found"`` (empty when the
            answer had none).
        message: the human-readable explanation; ``str(err)`` is this.
        status: the HTTP status (for errors that end a stream, the status
            the server gives their code).
        retry_after: the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, code: str = "", status: int = 0, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class NotFoundError(APIError):
    """The object does not exist (or belongs to another tenant). HTTP 404."""


class ConflictError(APIError):
    """The call conflicts with the object's state. HTTP 409."""


class AlreadyExistsError(ConflictError):
    """The name or object is taken. HTTP 409 ``already_exists``."""


class FailedPreconditionError(ConflictError):
    """The object is not in a state that allows the call (e.g. resuming a running
    sandbox). HTTP 409 ``failed_precondition``."""


class InvalidArgumentError(APIError):
    """The request's arguments were refused; the message names the bad one. HTTP 400."""


class UnauthorizedError(APIError):
    """No API key, or an unknown one. HTTP 401 ``unauthenticated``."""


UnauthenticatedError = UnauthorizedError


class PermissionDeniedError(APIError):
    """The key may not do this (e.g. a non-admin key changing images). HTTP 403."""


class ResourceExhaustedError(APIError):
    """A quota, the node's capacity or the rate limit was hit. HTTP 429."""


class InsufficientStorageError(ResourceExhaustedError):
    """A write filled the sandbox's disk. HTTP 507."""


class UnavailableError(APIError):
    """The server, a sandbox's agent or a registry cannot be reached now; retry. HTTP 503."""


class UnsupportedError(APIError):
    """The runtime or server cannot do this (e.g. suspend). HTTP 501."""


class InternalError(APIError):
    """An unexpected failure in den; the message says which. HTTP 500."""


class TooLargeError(APIError):
    """A request body over a server limit (a build context). HTTP 413."""


class CanceledError(APIError):
    """The call was canceled. HTTP 499."""


class DeadlineExceededError(APIError, TimeoutError):
    """The guest agent ended a call whose deadline passed."""


class BuildError(APIError):
    """An image build failed: a Dockerfile step, or a refused build context.

    Attributes:
        log: the last lines of build output before the failure.
    """

    def __init__(self, message: str, *, code: str = "", status: int = 0, log: list[str] | None = None):
        super().__init__(message, code=code, status=status)
        self.log = list(log or [])


class CommandExitError(DenError):
    """A command the SDK runs for you (``tar`` in ``upload_dir``) failed.

    Attributes:
        exit_code: its exit code; stdout, stderr: its output.
    """

    def __init__(self, message: str, *, exit_code: int, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


# The classes of the codes the server (internal/errdefs) and Connect use.
# Connect's "aborted" is the guest's spelling of conflict and "unimplemented"
# its spelling of unsupported.
_CODE_CLASSES: dict[str, type[APIError]] = {
    "not_found": NotFoundError,
    "already_exists": AlreadyExistsError,
    "invalid_argument": InvalidArgumentError,
    "out_of_range": InvalidArgumentError,
    "failed_precondition": FailedPreconditionError,
    "conflict": ConflictError,
    "aborted": ConflictError,
    "resource_exhausted": ResourceExhaustedError,
    "insufficient_storage": InsufficientStorageError,
    "unavailable": UnavailableError,
    "unsupported": UnsupportedError,
    "unimplemented": UnsupportedError,
    "unauthenticated": UnauthorizedError,
    "permission_denied": PermissionDeniedError,
    "internal": InternalError,
    "unknown": InternalError,
    "data_loss": InternalError,
    "too_large": TooLargeError,
    "canceled": CanceledError,
    "deadline_exceeded": DeadlineExceededError,
}

# The HTTP status of each code, as the server's errdefs gives it (and, for
# Connect's own codes, as Connect maps them). It sets APIError.status for an
# error that ends a stream, which arrives after the stream's 200.
_CODE_STATUS: dict[str, int] = {
    "not_found": 404,
    "already_exists": 409,
    "invalid_argument": 400,
    "out_of_range": 400,
    "failed_precondition": 409,
    "conflict": 409,
    "aborted": 409,
    "resource_exhausted": 429,
    "insufficient_storage": 507,
    "unavailable": 503,
    "unsupported": 501,
    "unimplemented": 501,
    "unauthenticated": 401,
    "permission_denied": 403,
    "internal": 500,
    "unknown": 500,
    "data_loss": 500,
    "too_large": 413,
    "canceled": 499,
    "deadline_exceeded": 504,
}

# The classes of statuses, for answers without a code (a proxy's plain text).
_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: InvalidArgumentError,
    401: UnauthorizedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    429: ResourceExhaustedError,
    499: CanceledError,
    500: InternalError,
    501: UnsupportedError,
    503: UnavailableError,
    504: DeadlineExceededError,
    507: InsufficientStorageError,
}


def status_of_code(code: str) -> int:
    """The HTTP status the server gives an error code (500 for unknown codes)."""
    return _CODE_STATUS.get(code, 500)


def error_for(message: str, *, code: str = "", status: int = 0, retry_after: float | None = None) -> APIError:
    """The APIError of the class that ``code`` (else ``status``) names."""
    cls = _CODE_CLASSES.get(code) or _STATUS_CLASSES.get(status, APIError)
    if code == "unimplemented":
        code = "unsupported"
    if not status and code:
        status = status_of_code(code)
    return cls(message, code=code, status=status, retry_after=retry_after)


def error_from_wire(obj: Mapping[str, Any], status: int = 0) -> APIError:
    """The APIError of a ``{"code", "message"}`` object (REST, Connect, NDJSON)."""
    code = obj.get("code")
    return error_for(str(obj.get("message") or ""), code=code if isinstance(code, str) else "", status=status)


# maxErrorBody of the Go SDK: how much of an error answer is read.
MAX_ERROR_BODY = 64 << 10


def error_from_body(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> APIError:
    """The APIError of a non-2xx answer: its ``{"code","message"}`` body (a
    numeric code, as envd sends, is ignored), else its text."""
    retry_after = _retry_after(headers)
    body = body[:MAX_ERROR_BODY]
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and obj.get("message"):
        code = obj.get("code")
        return error_for(str(obj["message"]), code=code if isinstance(code, str) else "", status=status, retry_after=retry_after)
    text = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    return error_for(text, status=status, retry_after=retry_after)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    v = headers.get("retry-after") or headers.get("Retry-After")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        return None
