package den

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"connectrpc.com/connect"
)

// Error codes of the REST API and of the guest agent's Connect errors. The
// REST API and Connect share the spelling of the codes they have in common.
const (
	CodeNotFound           = "not_found"
	CodeAlreadyExists      = "already_exists"
	CodeInvalidArgument    = "invalid_argument"
	CodeFailedPrecondition = "failed_precondition"
	CodeConflict           = "conflict"
	CodeResourceExhausted  = "resource_exhausted"
	CodeUnavailable        = "unavailable"
	CodeUnsupported        = "unsupported"
	CodeUnauthenticated    = "unauthenticated"
	CodePermissionDenied   = "permission_denied"
	CodeInternal           = "internal"
	// CodeTooLarge refuses a request body over a server limit (a build
	// context).
	CodeTooLarge = "too_large"
)

// APIError is an error answered by the den server or by a sandbox's guest
// agent.
type APIError struct {
	// Status is the HTTP status of the response (for Connect errors, the
	// status Connect maps the code to).
	Status int
	// Code is the machine-readable error code, e.g. "not_found".
	Code string
	// Message is the human-readable explanation.
	Message string

	cause error
}

// Error implements error.
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Unwrap returns the underlying Connect error, if any.
func (e *APIError) Unwrap() error { return e.cause }

// IsNotFound reports whether err is an API error meaning "does not exist".
func IsNotFound(err error) bool { return hasCode(err, CodeNotFound, http.StatusNotFound) }

// IsAlreadyExists reports whether err says that the object already exists.
func IsAlreadyExists(err error) bool { return hasCode(err, CodeAlreadyExists, 0) }

// IsConflict reports whether err is a conflict with the object's state
// (conflict, already_exists or failed_precondition; HTTP 409).
func IsConflict(err error) bool {
	return hasCode(err, CodeConflict, http.StatusConflict) ||
		hasCode(err, CodeAlreadyExists, 0) || hasCode(err, CodeFailedPrecondition, 0)
}

// IsInvalidArgument reports whether err rejects the request's arguments.
func IsInvalidArgument(err error) bool {
	return hasCode(err, CodeInvalidArgument, http.StatusBadRequest)
}

// IsUnauthenticated reports whether the API key was missing or wrong.
func IsUnauthenticated(err error) bool {
	return hasCode(err, CodeUnauthenticated, http.StatusUnauthorized)
}

// IsUnavailable reports whether the server or sandbox is temporarily
// unavailable; the request may succeed when retried.
func IsUnavailable(err error) bool {
	return hasCode(err, CodeUnavailable, http.StatusServiceUnavailable)
}

// IsResourceExhausted reports whether a quota or capacity limit was hit.
func IsResourceExhausted(err error) bool {
	return hasCode(err, CodeResourceExhausted, http.StatusTooManyRequests)
}

// hasCode reports whether err is an *APIError with the code, or, when it
// has no code, with the HTTP status (0 matches no status).
func hasCode(err error, code string, status int) bool {
	var e *APIError
	if !errors.As(err, &e) {
		return false
	}
	if e.Code != "" {
		return e.Code == code
	}
	return status != 0 && e.Status == status
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// errorFromResponse builds an *APIError from a non-2xx response. It accepts
// {"code": "...", "message": "..."} with a string or numeric code (envd
// answers numeric codes) and falls back to the body text.
func errorFromResponse(resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	var wire struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Message != "" {
		e.Message = wire.Message
		var s string
		if json.Unmarshal(wire.Code, &s) == nil {
			e.Code = s
		}
		return e
	}
	e.Message = string(body)
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// connectStatus maps Connect codes to the HTTP status of the same meaning.
var connectStatus = map[connect.Code]int{
	connect.CodeCanceled:           499,
	connect.CodeInvalidArgument:    http.StatusBadRequest,
	connect.CodeDeadlineExceeded:   http.StatusGatewayTimeout,
	connect.CodeNotFound:           http.StatusNotFound,
	connect.CodeAlreadyExists:      http.StatusConflict,
	connect.CodePermissionDenied:   http.StatusForbidden,
	connect.CodeResourceExhausted:  http.StatusTooManyRequests,
	connect.CodeFailedPrecondition: http.StatusConflict,
	connect.CodeAborted:            http.StatusConflict,
	connect.CodeUnimplemented:      http.StatusNotImplemented,
	connect.CodeUnavailable:        http.StatusServiceUnavailable,
	connect.CodeUnauthenticated:    http.StatusUnauthorized,
}

// fromConnect converts a Connect error into an *APIError carrying its code.
// An *APIError already inside err (a proxy error seen by the transport)
// wins. Other errors are returned unchanged.
func fromConnect(err error) error {
	var api *APIError
	if errors.As(err, &api) {
		return api
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	status, ok := connectStatus[ce.Code()]
	if !ok {
		status = http.StatusInternalServerError
	}
	code := ce.Code().String()
	if ce.Code() == connect.CodeUnimplemented {
		code = CodeUnsupported
	}
	return &APIError{Status: status, Code: code, Message: ce.Message(), cause: err}
}

// statusText renders an HTTP status for messages.
func statusText(status int) string {
	return strconv.Itoa(status) + " " + http.StatusText(status)
}
