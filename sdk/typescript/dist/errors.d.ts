/** DenError is the base class of every error the SDK throws. */
export declare class DenError extends Error {
    constructor(message: string, options?: {
        cause?: unknown;
    });
}
/** NotConfiguredError: no server URL in the options, DEN_URL or den up's env file. */
export declare class NotConfiguredError extends DenError {
}
/**
 * TimeoutError: a command ran past its timeoutMs (it was killed), or a wait
 * of the SDK's own ran out.
 */
export declare class TimeoutError extends DenError {
}
/**
 * APIError is an error answered by the den server or by a sandbox's guest
 * agent: `{"code","message"}` with an HTTP status. message is the server's
 * text, unchanged.
 */
export declare class APIError extends DenError {
    /** Machine-readable code, e.g. "not_found" (see docs/api.md, Errors). */
    readonly code: string;
    /** HTTP status; for an error inside a stream, the status of its code. */
    readonly status: number;
    /** Seconds to wait before retrying, from Retry-After (429), if sent. */
    readonly retryAfter?: number;
    constructor(code: string, message: string, status: number, retryAfter?: number);
}
/** 500 internal: a bug or an unexpected failure on the server. */
export declare class InternalError extends APIError {
}
/** 404 not_found: unknown (or another tenant's) object or path. */
export declare class NotFoundError extends APIError {
}
/** 400 invalid_argument: the request's arguments are wrong; the message says which. */
export declare class InvalidArgumentError extends APIError {
}
/** 409: the object's state forbids the call. Base of AlreadyExistsError and FailedPreconditionError. */
export declare class ConflictError extends APIError {
}
/** 409 already_exists: the name is taken. */
export declare class AlreadyExistsError extends ConflictError {
}
/** 409 failed_precondition: the object is not in a state that allows the call. */
export declare class FailedPreconditionError extends ConflictError {
}
/** 429 resource_exhausted: out of capacity, at a quota, or over the rate limit. */
export declare class ResourceExhaustedError extends APIError {
}
/** 503 unavailable: the server, the guest agent or a registry cannot be reached now. */
export declare class UnavailableError extends APIError {
}
/** 501 unsupported: the runtime or server cannot do this. */
export declare class UnsupportedError extends APIError {
}
/** 401 unauthenticated: no API key, or an unknown one. */
export declare class UnauthenticatedError extends APIError {
}
/** 403 permission_denied: the key may not do this (e.g. a non-admin changing images). */
export declare class PermissionDeniedError extends APIError {
}
/** 507 insufficient_storage: a write filled the sandbox's disk (a resource exhausted, as in the Python SDK). */
export declare class InsufficientStorageError extends ResourceExhaustedError {
}
/** 499 canceled: the request was canceled. */
export declare class CanceledError extends APIError {
}
/** 413 too_large: a request body over a server limit (a build context). */
export declare class TooLargeError extends APIError {
}
/** The error codes the SDK has a class for (the spec test checks the API's). */
export declare const ERROR_CODES: readonly string[];
/**
 * apiError builds the APIError subclass of code. status 0 means "the status
 * of the code" (errors inside a stream arrive after its 200).
 */
export declare function apiError(code: string, message: string, status?: number, retryAfter?: number): APIError;
/**
 * errorFromBody builds the error of a non-2xx answer from its body text:
 * `{"code","message"}` with a string code (den) or a numeric one (envd's
 * HTTP routes), else the text itself.
 */
export declare function errorFromBody(status: number, text: string, retryAfter?: number): APIError;
