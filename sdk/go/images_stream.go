package den

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/denhq/den/api/rest"
)

// Progress is a progress report of a pull or push: a phase of one layer
// (Detail is its digest) and the bytes done of Total (0 when unknown).
type Progress = rest.ImageProgress

// PullOptions configure Images.Pull.
type PullOptions struct {
	// Insecure allows plain HTTP to the registry (loopback and private
	// addresses use it anyway).
	Insecure bool
	// Username and Password log in to the registry; empty means anonymous.
	Username, Password string
	// Platform picks an image of a multi-platform index, "os/arch[/variant]";
	// empty means the server's.
	Platform string
	// Progress, when set, is called with the server's progress reports, in
	// order, from the calling goroutine.
	Progress func(Progress)
}

// Pull has the server pull the image ref ("docker.io/library/alpine:3.20")
// from its registry and store it under that name. It needs an admin key.
func (im *Images) Pull(ctx context.Context, ref string, opts PullOptions) (*rest.Image, error) {
	in := rest.PullImageRequest{Ref: ref, Insecure: opts.Insecure, Username: opts.Username, Password: opts.Password, Platform: opts.Platform}
	var img *rest.Image
	err := im.c.streamJSON(ctx, "/v1/images/pull", in, func(ev rest.ImageEvent) bool {
		if ev.Progress != nil && opts.Progress != nil {
			opts.Progress(*ev.Progress)
		}
		img = ev.Image
		return img != nil
	})
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", ref, err)
	}
	return img, nil
}

// PushOptions configure Images.Push.
type PushOptions struct {
	// Insecure allows plain HTTP to the registry (loopback and private
	// addresses use it anyway).
	Insecure bool
	// Username and Password log in to the registry; empty means anonymous.
	Username, Password string
	// Progress, when set, is called with the server's progress reports, in
	// order, from the calling goroutine.
	Progress func(Progress)
}

// Push has the server push the stored image (a name or ID) to the registry
// reference dest, and returns the digest of the pushed manifest. It needs an
// admin key.
func (im *Images) Push(ctx context.Context, image, dest string, opts PushOptions) (string, error) {
	in := rest.PushImageRequest{Image: image, Dest: dest, Insecure: opts.Insecure, Username: opts.Username, Password: opts.Password}
	var digest string
	err := im.c.streamJSON(ctx, "/v1/images/push", in, func(ev rest.ImageEvent) bool {
		if ev.Progress != nil && opts.Progress != nil {
			opts.Progress(*ev.Progress)
		}
		digest = ev.Digest
		return digest != ""
	})
	if err != nil {
		return "", fmt.Errorf("push image %s to %s: %w", image, dest, err)
	}
	return digest, nil
}

// streamJSON POSTs in as JSON to path and reads the NDJSON answer (see
// stream).
func (c *Client) streamJSON(ctx context.Context, path string, in any, on func(rest.ImageEvent) bool) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, nil, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.stream(req, on)
}

// errNoResult is the error of a stream that ended before its last line.
var errNoResult = errors.New("the server ended the answer without a result")

// stream sends req and hands each line of its NDJSON answer to on until on
// reports the final line (true). An error line, or an error answered
// before the stream began, becomes an *APIError.
func (c *Client) stream(req *http.Request, on func(rest.ImageEvent) bool) error {
	req.Header.Set("Accept", rest.NDJSONContentType+", application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return contextErr(req.Context(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errorFromResponse(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev rest.ImageEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = errNoResult
			}
			return fmt.Errorf("read answer: %w", contextErr(req.Context(), err))
		}
		if ev.Error != nil {
			return &APIError{Status: codeStatus(ev.Error.Code), Code: ev.Error.Code, Message: ev.Error.Message}
		}
		if on(ev) {
			return nil
		}
	}
}

// codeStatus is the HTTP status the server gives an error code; an error
// inside a stream arrives after the stream's 200.
func codeStatus(code string) int {
	switch code {
	case CodeNotFound:
		return http.StatusNotFound
	case CodeAlreadyExists, CodeConflict, CodeFailedPrecondition:
		return http.StatusConflict
	case CodeInvalidArgument:
		return http.StatusBadRequest
	case CodeResourceExhausted:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeUnsupported:
		return http.StatusNotImplemented
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodePermissionDenied:
		return http.StatusForbidden
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case "canceled":
		return 499
	}
	return http.StatusInternalServerError
}
