// Errors of the SDK: DenError for everything it throws, APIError for an
// error answered by the den server or a sandbox's guest agent, and one
// subclass of APIError per error code (internal/errdefs on the server), so
// that callers can write `catch (e) { if (e instanceof NotFoundError) ... }`.

/** DenError is the base class of every error the SDK throws. */
export class DenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** NotConfiguredError: no server URL in the options, DEN_URL or den up's env file. */
export class NotConfiguredError extends DenError {}

/**
 * TimeoutError: a command ran past its timeoutMs (it was killed), or a wait
 * of the SDK's own ran out.
 */
export class TimeoutError extends DenError {}

/**
 * APIError is an error answered by the den server or by a sandbox's guest
 * agent: `{"code","message"}` with an HTTP status. message is the server's
 * text, unchanged.
 */
export class APIError extends DenError {
  /** Machine-readable code, e.g. "not_found" (see docs/api.md, Errors). */
  readonly code: string
  /** HTTP status; for an error inside a stream, the status of its code. */
  readonly status: number
  /** Seconds to wait before retrying, from Retry-After (429), if sent. */
  readonly retryAfter?: number

  constructor(code: string, message: string, status: number, retryAfter?: number) {
    super(message)
    this.code = code
    this.status = status
    if (retryAfter !== undefined) this.retryAfter = retryAfter
  }
}

/** 500 internal: a bug or an unexpected failure on the server. */
export class InternalError extends APIError {}
/** 404 not_found: unknown (or another tenant's) object or path. */
export class NotFoundError extends APIError {}
/** 400 invalid_argument: the request's arguments are wrong; the message says which. */
export class InvalidArgumentError extends APIError {}
/** 409: the object's state forbids the call. Base of AlreadyExistsError and FailedPreconditionError. */
export class ConflictError extends APIError {}
/** 409 already_exists: the name is taken. */
export class AlreadyExistsError extends ConflictError {}
/** 409 failed_precondition: the object is not in a state that allows the call. */
export class FailedPreconditionError extends ConflictError {}
/** 429 resource_exhausted: out of capacity, at a quota, or over the rate limit. */
export class ResourceExhaustedError extends APIError {}
/** 503 unavailable: the server, the guest agent or a registry cannot be reached now. */
export class UnavailableError extends APIError {}
/** 501 unsupported: the runtime or server cannot do this. */
export class UnsupportedError extends APIError {}
/** 401 unauthenticated: no API key, or an unknown one. */
export class UnauthenticatedError extends APIError {}
/** 403 permission_denied: the key may not do this (e.g. a non-admin changing images). */
export class PermissionDeniedError extends APIError {}
/** 507 insufficient_storage: a write filled the sandbox's disk (a resource exhausted, as in the Python SDK). */
export class InsufficientStorageError extends ResourceExhaustedError {}
/** 499 canceled: the request was canceled. */
export class CanceledError extends APIError {}
/** 413 too_large: a request body over a server limit (a build context). */
export class TooLargeError extends APIError {}

type APIErrorClass = new (code: string, message: string, status: number, retryAfter?: number) => APIError

/** The class and HTTP status of each error code. */
const codes: Record<string, [APIErrorClass, number]> = {
  internal: [InternalError, 500],
  not_found: [NotFoundError, 404],
  already_exists: [AlreadyExistsError, 409],
  invalid_argument: [InvalidArgumentError, 400],
  failed_precondition: [FailedPreconditionError, 409],
  conflict: [ConflictError, 409],
  resource_exhausted: [ResourceExhaustedError, 429],
  unavailable: [UnavailableError, 503],
  unsupported: [UnsupportedError, 501],
  unauthenticated: [UnauthenticatedError, 401],
  permission_denied: [PermissionDeniedError, 403],
  insufficient_storage: [InsufficientStorageError, 507],
  canceled: [CanceledError, 499],
  too_large: [TooLargeError, 413],
  // Connect codes of the guest agent that the REST API does not use.
  unimplemented: [UnsupportedError, 501],
  aborted: [ConflictError, 409],
  deadline_exceeded: [APIError, 504],
  out_of_range: [InvalidArgumentError, 400],
  unknown: [InternalError, 500],
  data_loss: [InternalError, 500],
}

/** The error codes the SDK has a class for (the spec test checks the API's). */
export const ERROR_CODES: readonly string[] = Object.keys(codes)

/** The code of an HTTP status, for answers whose body carries none. */
const statusCodes: Record<number, string> = {
  400: 'invalid_argument',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'conflict',
  413: 'too_large',
  429: 'resource_exhausted',
  499: 'canceled',
  500: 'internal',
  501: 'unsupported',
  503: 'unavailable',
  507: 'insufficient_storage',
}

/**
 * apiError builds the APIError subclass of code. status 0 means "the status
 * of the code" (errors inside a stream arrive after its 200).
 */
export function apiError(code: string, message: string, status = 0, retryAfter?: number): APIError {
  const known = codes[code]
  const cls = known ? known[0] : APIError
  return new cls(code, message, status || (known ? known[1] : 500), retryAfter)
}

/**
 * errorFromBody builds the error of a non-2xx answer from its body text:
 * `{"code","message"}` with a string code (den) or a numeric one (envd's
 * HTTP routes), else the text itself.
 */
export function errorFromBody(status: number, text: string, retryAfter?: number): APIError {
  let code = statusCodes[status] ?? (status >= 500 ? 'internal' : 'unknown')
  let message = text.trim()
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown }
    if (typeof body.message === 'string' && body.message !== '') {
      message = body.message
      if (typeof body.code === 'string' && body.code !== '') code = body.code
    }
  } catch {
    // Not JSON: the text is the message.
  }
  if (message === '') message = `HTTP ${status}`
  return apiError(code, message, status, retryAfter)
}
