package server

import (
	"net/http"
	"strings"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
)

// The /v1/images routes. Images are shared by every tenant of a node, so
// reading them is open to any key and changing them needs an admin key.
// Pull, push and build answer NDJSON streams (images_stream.go, build.go).

func imageToREST(im *image.Image) rest.Image {
	return rest.Image{Name: im.Name, ID: im.ID, Size: im.Size, CreatedAt: im.CreatedAt, Digest: im.Digest}
}

func (s *Server) listImages(w http.ResponseWriter, _ *http.Request, _ Principal) error {
	list, err := s.cfg.Images.List()
	if err != nil {
		return err
	}
	out := rest.ImageList{Images: make([]rest.Image, 0, len(list))}
	for i := range list {
		out.Images = append(out.Images, imageToREST(&list[i]))
	}
	return writeJSON(w, http.StatusOK, out)
}

// getImage answers the image with its layers, configuration and history.
func (s *Server) getImage(w http.ResponseWriter, r *http.Request, _ Principal) error {
	d, err := s.cfg.Images.Inspect(r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, detailsToREST(d))
}

// importImage takes a docker-archive or OCI-layout tar as the request body.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "import images"); err != nil {
		return err
	}
	im, err := s.cfg.Images.Import(r.Context(), r.Body, r.URL.Query().Get("name"), nil)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, imageToREST(im))
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "remove images"); err != nil {
		return err
	}
	if err := s.cfg.Images.Remove(r.PathValue("ref")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// tagImage gives the image {ref} another name and answers the image under it.
func (s *Server) tagImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "tag images"); err != nil {
		return err
	}
	var req rest.TagImageRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return errdefs.New(errdefs.InvalidArgument, `name is required: send {"name":"NEW-NAME"}`)
	}
	if err := s.cfg.Images.Tag(r.PathValue("ref"), req.Name); err != nil {
		return err
	}
	im, err := s.cfg.Images.Get(req.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, imageToREST(im))
}

// pruneImages deletes layers and blobs that no image uses.
func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "prune images"); err != nil {
		return err
	}
	rep, err := s.cfg.Images.Prune(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rest.PruneImagesResult{Layers: rep.Layers, Blobs: rep.Blobs, Bytes: rep.Bytes})
}

// exportImage answers the image {ref} as a docker-archive or OCI-layout
// tar. An error after the first byte aborts the response, so a client never
// mistakes a truncated archive for a whole one.
func (s *Server) exportImage(w http.ResponseWriter, r *http.Request, _ Principal) error {
	ref := r.PathValue("ref")
	format := r.URL.Query().Get("format")
	if format == "" {
		format = rest.ExportDockerArchive
	}
	if format != rest.ExportDockerArchive && format != rest.ExportOCI {
		return errdefs.New(errdefs.InvalidArgument, "format %q is invalid: use %s or %s", format, rest.ExportDockerArchive, rest.ExportOCI)
	}
	if _, err := s.cfg.Images.Get(ref); err != nil {
		return err
	}
	out := &startOnWrite{w: w, start: func(h http.Header) {
		h.Set("Content-Type", "application/x-tar")
		h.Set("Content-Disposition", `attachment; filename="`+archiveFileName(ref)+`"`)
	}}
	if err := s.cfg.Images.Export(r.Context(), ref, format, out); err != nil {
		if !out.started {
			return err
		}
		s.log.Error("export image failed after the answer began", "ref", ref, "err", err)
		panic(http.ErrAbortHandler)
	}
	out.begin()
	return nil
}

// startOnWrite sends the status and headers at the first write, so that a
// handler can still answer an error with its own status before it.
type startOnWrite struct {
	w       http.ResponseWriter
	start   func(http.Header)
	started bool
}

func (s *startOnWrite) begin() {
	if !s.started {
		s.started = true
		s.start(s.w.Header())
		s.w.WriteHeader(http.StatusOK)
	}
}

func (s *startOnWrite) Write(p []byte) (int, error) {
	s.begin()
	return s.w.Write(p)
}

// archiveFileName is a file name for an export of ref: its letters, digits,
// dots and dashes, other bytes replaced by "_".
func archiveFileName(ref string) string {
	name := strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, ref)
	return name + ".tar"
}

// detailsToREST converts an inspected image to its wire form.
func detailsToREST(d *image.Details) rest.ImageDetails {
	out := rest.ImageDetails{
		Image:  imageToREST(&d.Image),
		Layers: make([]rest.ImageLayer, 0, len(d.Layers)),
		Config: rest.ImageConfig{
			Env:          d.Config.Env,
			WorkingDir:   d.Config.WorkingDir,
			User:         d.Config.User,
			Entrypoint:   d.Config.Entrypoint,
			Cmd:          d.Config.Cmd,
			ExposedPorts: d.Config.ExposedPorts,
			Labels:       d.Config.Labels,
			Shell:        d.Config.Shell,
			StopSignal:   d.Config.StopSignal,
		},
	}
	for _, l := range d.Layers {
		out.Layers = append(out.Layers, rest.ImageLayer{
			DiffID: l.DiffID, Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, UnpackedSize: l.UnpackedSize,
		})
	}
	for _, h := range d.History {
		out.History = append(out.History, rest.ImageHistory{Created: h.Created, CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer})
	}
	return out
}

// requireAdmin allows node-wide changes (images are shared by all tenants
// of a node) only to admin keys.
func requireAdmin(p Principal, what string) error {
	if !p.Admin {
		return errdefs.New(errdefs.PermissionDenied, "only an admin API key may %s", what)
	}
	return nil
}
