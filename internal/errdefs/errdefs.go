// Package errdefs classifies errors into a small set of kinds. Code anywhere
// wraps a kind with context ("create sandbox %s: %w"); only the edges (HTTP,
// RPC, CLI) map a kind to a wire code, through the functions in this package.
package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Kind is the class of an error. The zero Kind is Internal.
type Kind int

// The kinds, after containerd's errdefs and gRPC's codes.
const (
	Internal Kind = iota
	NotFound
	AlreadyExists
	InvalidArgument
	FailedPrecondition
	Conflict
	ResourceExhausted
	Unavailable
	Unsupported
	Unauthenticated
	PermissionDenied
	InsufficientStorage
	Canceled
	// TooLarge is a request body over a limit (a build context).
	TooLarge
)

var kindInfo = map[Kind]struct {
	code   string
	status int
}{
	Internal:            {"internal", http.StatusInternalServerError},
	NotFound:            {"not_found", http.StatusNotFound},
	AlreadyExists:       {"already_exists", http.StatusConflict},
	InvalidArgument:     {"invalid_argument", http.StatusBadRequest},
	FailedPrecondition:  {"failed_precondition", http.StatusConflict},
	Conflict:            {"conflict", http.StatusConflict},
	ResourceExhausted:   {"resource_exhausted", http.StatusTooManyRequests},
	Unavailable:         {"unavailable", http.StatusServiceUnavailable},
	Unsupported:         {"unsupported", http.StatusNotImplemented},
	Unauthenticated:     {"unauthenticated", http.StatusUnauthorized},
	PermissionDenied:    {"permission_denied", http.StatusForbidden},
	InsufficientStorage: {"insufficient_storage", http.StatusInsufficientStorage},
	Canceled:            {"canceled", 499},
	TooLarge:            {"too_large", http.StatusRequestEntityTooLarge},
}

// Code is the stable wire name of the kind, used as the "code" field of API errors.
func (k Kind) Code() string { return kindInfo[k].code }

// KindOfCode is the kind whose Code is code, and false for an unknown code:
// how a kind crosses a wire between den processes.
func KindOfCode(code string) (Kind, bool) {
	for k, info := range kindInfo {
		if info.code == code {
			return k, true
		}
	}
	return Internal, false
}

// HTTPStatus is the HTTP status the kind maps to at the API edge.
func (k Kind) HTTPStatus() int { return kindInfo[k].status }

func (k Kind) String() string { return k.Code() }

// Error is an error of a known kind. Message is safe to show to API clients.
type Error struct {
	Kind    Kind
	Message string
	Err     error // optional cause
}

func (e *Error) Error() string {
	if e.Err != nil && e.Message == "" {
		return e.Err.Error()
	}
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind k with a formatted message.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap classifies err as kind k with an extra message; nil stays nil.
func Wrap(k Kind, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...), Err: err}
}

// KindOf returns the kind of the outermost classified error in err's chain,
// or Internal when none is classified. context.Canceled maps to Canceled.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, errCanceled) {
		return Canceled
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// IsNotFound reports whether err is of kind NotFound.
func IsNotFound(err error) bool { return Is(err, NotFound) }

// retryAfter is a ResourceExhausted error that says when to try again.
type retryAfter struct {
	err   *Error
	after time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// TooManyRequests is a ResourceExhausted error whose caller may retry
// after d; HTTP writers send it as Retry-After.
func TooManyRequests(d time.Duration, format string, args ...any) error {
	return &retryAfter{err: &Error{Kind: ResourceExhausted, Message: fmt.Sprintf(format, args...)}, after: d}
}

// RetryAfter returns, for an error made by TooManyRequests, the wait it
// names rounded up to whole seconds (at least 1), as HTTP's Retry-After
// header carries it; 0 for any other error.
func RetryAfter(err error) int {
	var e *retryAfter
	if !errors.As(err, &e) {
		return 0
	}
	s := int((e.after + time.Second - 1) / time.Second)
	return max(s, 1)
}
