package server

import (
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
)

func imageToREST(im *image.Image) rest.Image {
	return rest.Image{Name: im.Name, ID: im.ID, Size: im.Size, CreatedAt: im.CreatedAt}
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

func (s *Server) getImage(w http.ResponseWriter, r *http.Request, _ Principal) error {
	im, err := s.cfg.Images.Get(r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, imageToREST(im))
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

// requireAdmin allows node-wide changes (images are shared by all tenants
// of a node) only to admin keys.
func requireAdmin(p Principal, what string) error {
	if !p.Admin {
		return errdefs.New(errdefs.PermissionDenied, "only an admin API key may %s", what)
	}
	return nil
}
