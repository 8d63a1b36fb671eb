package errdefs

import "context"

var errCanceled = context.Canceled
