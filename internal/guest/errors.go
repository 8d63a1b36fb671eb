package guest

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"syscall"

	"connectrpc.com/connect"

	"github.com/denhq/den/internal/errdefs"
)

// connectCodes maps error kinds to Connect codes. Kinds not listed map to
// CodeInternal.
var connectCodes = map[errdefs.Kind]connect.Code{
	errdefs.NotFound:            connect.CodeNotFound,
	errdefs.AlreadyExists:       connect.CodeAlreadyExists,
	errdefs.InvalidArgument:     connect.CodeInvalidArgument,
	errdefs.FailedPrecondition:  connect.CodeFailedPrecondition,
	errdefs.Conflict:            connect.CodeAborted,
	errdefs.ResourceExhausted:   connect.CodeResourceExhausted,
	errdefs.Unavailable:         connect.CodeUnavailable,
	errdefs.Unsupported:         connect.CodeUnimplemented,
	errdefs.Unauthenticated:     connect.CodeUnauthenticated,
	errdefs.PermissionDenied:    connect.CodePermissionDenied,
	errdefs.InsufficientStorage: connect.CodeResourceExhausted,
	errdefs.Canceled:            connect.CodeCanceled,
}

// classifyFS gives an unclassified filesystem error its kind, so that the
// edges can map it: missing paths are NotFound, full disks are
// InsufficientStorage and so on. Classified errors pass through unchanged.
func classifyFS(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var de *errdefs.Error
	if errors.As(err, &de) {
		return err
	}
	return errdefs.Wrap(fsKind(err), err, format, args...)
}

func fsKind(err error) errdefs.Kind {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errdefs.InsufficientStorage
	case errors.Is(err, fs.ErrNotExist):
		return errdefs.NotFound
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		return errdefs.AlreadyExists
	case errors.Is(err, fs.ErrPermission):
		return errdefs.PermissionDenied
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR),
		errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EXDEV),
		errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.ELOOP):
		// A name too long or a symlink loop is the request's path at fault.
		return errdefs.InvalidArgument
	}
	return errdefs.Internal
}

// toConnect converts err to a *connect.Error with the code of its kind.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The request's Connect-Timeout-Ms passed: the SDKs map this code
		// to their timeout errors.
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	code, ok := connectCodes[errdefs.KindOf(err)]
	if !ok {
		code = connect.CodeInternal
	}
	return connect.NewError(code, err)
}

// apiError is the JSON body of an HTTP error, as envd sends it.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeHTTPError writes err as a {"code","message"} JSON body with the HTTP
// status of its kind.
func writeHTTPError(w http.ResponseWriter, err error) {
	k := errdefs.KindOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(k.HTTPStatus())
	_ = json.NewEncoder(w).Encode(apiError{Code: k.Code(), Message: err.Error()})
}
