package den

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/denhq/den/api/rest"
)

// Images manages the server's images. Get one from Client.Images.
type Images struct {
	c *Client
}

// Images returns the image operations of the client.
func (c *Client) Images() *Images { return &Images{c: c} }

func imagePath(ref string) string { return "/v1/images/" + url.PathEscape(ref) }

// List lists the images.
func (im *Images) List(ctx context.Context) ([]rest.Image, error) {
	var l rest.ImageList
	if err := im.c.doJSON(ctx, http.MethodGet, "/v1/images", nil, nil, &l); err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return l.Images, nil
}

// Get returns the image with the given name or ID.
func (im *Images) Get(ctx context.Context, ref string) (*rest.Image, error) {
	var img rest.Image
	if err := im.c.doJSON(ctx, http.MethodGet, imagePath(ref), nil, nil, &img); err != nil {
		return nil, fmt.Errorf("get image %s: %w", ref, err)
	}
	return &img, nil
}

// Import uploads an image archive (a docker-archive as written by `docker
// save`, or an OCI-layout tar) read from r, and stores it as name ("" lets
// the server take the name from the archive). The archive is streamed as it
// is read, never held in memory whole.
func (im *Images) Import(ctx context.Context, r io.Reader, name string) (*rest.Image, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	// NopCloser hides any Len/WriterTo so the body is streamed chunked.
	req, err := im.c.newRequest(ctx, http.MethodPost, "/v1/images", q, io.NopCloser(r))
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	var img rest.Image
	if err := im.c.send(req, &img); err != nil {
		return nil, fmt.Errorf("import image %s: %w", name, err)
	}
	return &img, nil
}

// Remove removes the image with the given name or ID.
func (im *Images) Remove(ctx context.Context, ref string) error {
	if err := im.c.doJSON(ctx, http.MethodDelete, imagePath(ref), nil, nil, nil); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}
