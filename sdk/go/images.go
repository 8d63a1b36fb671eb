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

// Inspect returns the image with the given name or ID, with its layers,
// configuration and history.
func (im *Images) Inspect(ctx context.Context, ref string) (*rest.ImageDetails, error) {
	var d rest.ImageDetails
	if err := im.c.doJSON(ctx, http.MethodGet, imagePath(ref), nil, nil, &d); err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return &d, nil
}

// Tag gives the image ref (a name or ID) the further name, and returns the
// image under it. It needs an admin key.
func (im *Images) Tag(ctx context.Context, ref, name string) (*rest.Image, error) {
	var img rest.Image
	if err := im.c.doJSON(ctx, http.MethodPost, imagePath(ref)+"/tag", nil, rest.TagImageRequest{Name: name}, &img); err != nil {
		return nil, fmt.Errorf("tag image %s as %s: %w", ref, name, err)
	}
	return &img, nil
}

// Export writes the image ref to w as a tar in format: rest.ExportDockerArchive
// (`docker load` reads it; "" means this) or rest.ExportOCI (an OCI image
// layout). The archive is streamed as it arrives.
func (im *Images) Export(ctx context.Context, ref, format string, w io.Writer) error {
	q := url.Values{}
	if format != "" {
		q.Set("format", format)
	}
	req, err := im.c.newRequest(ctx, http.MethodGet, imagePath(ref)+"/export", q, nil)
	if err != nil {
		return fmt.Errorf("export image %s: %w", ref, err)
	}
	req.Header.Set("Accept", "application/x-tar, application/json")
	resp, err := im.c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("export image %s: %w", ref, contextErr(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("export image %s: %w", ref, errorFromResponse(resp))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("export image %s: %w", ref, contextErr(ctx, err))
	}
	return nil
}

// Prune deletes the layers and blobs no image uses. It needs an admin key.
func (im *Images) Prune(ctx context.Context) (*rest.PruneImagesResult, error) {
	var res rest.PruneImagesResult
	if err := im.c.doJSON(ctx, http.MethodPost, "/v1/images/prune", nil, nil, &res); err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	return &res, nil
}
