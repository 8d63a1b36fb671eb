package server

import (
	"net/http"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/image"
)

func imageToREST(im *image.Image) rest.Image {
	return rest.Image{Name: im.Name, ID: im.ID, Size: im.Size, CreatedAt: im.CreatedAt}
}

func (s *Server) listImages(w http.ResponseWriter, _ *http.Request, _ principal) error {
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

func (s *Server) getImage(w http.ResponseWriter, r *http.Request, _ principal) error {
	im, err := s.cfg.Images.Get(r.PathValue("ref"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, imageToREST(im))
}

// importImage takes a docker-archive or OCI-layout tar as the request body.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request, _ principal) error {
	im, err := s.cfg.Images.Import(r.Context(), r.Body, r.URL.Query().Get("name"), nil)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, imageToREST(im))
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request, _ principal) error {
	if err := s.cfg.Images.Remove(r.PathValue("ref")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
