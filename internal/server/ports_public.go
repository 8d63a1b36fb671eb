package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/store"
)

// envdPort is the guest agent's port: it is never public (its API runs
// commands), whatever a sandbox's public ports say.
const envdPort = 49983

// publicPorts validates and sorts a public-port list.
func publicPorts(in []int) ([]int, error) {
	if len(in) > rest.MaxPublicPorts {
		return nil, errdefs.New(errdefs.InvalidArgument, "public_ports has %d entries: at most %d (0 makes every port public)", len(in), rest.MaxPublicPorts)
	}
	out := slices.Clone(in)
	for _, p := range out {
		if p < 0 || p > 65535 {
			return nil, errdefs.New(errdefs.InvalidArgument, "public port %d: want a port from 1 to 65535, or 0 for every port", p)
		}
		if p == envdPort {
			return nil, errdefs.New(errdefs.InvalidArgument, "port %d is the guest agent's: it cannot be public", p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// SetPortPublic makes port of sandbox idOrName public (served without a
// token) or private again; port 0 is every port. Making every port
// private clears the list.
func (s *Server) SetPortPublic(ctx context.Context, p Principal, idOrName string, port int, public bool) (*store.Sandbox, error) {
	if _, err := publicPorts([]int{port}); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		sb, err := s.Inspect(p, idOrName)
		if err != nil {
			return nil, err
		}
		next := sb.Clone()
		switch {
		case public:
			next.PublicPorts = append(next.PublicPorts, port)
		case port == 0:
			next.PublicPorts = nil
		default:
			next.PublicPorts = slices.DeleteFunc(next.PublicPorts, func(q int) bool { return q == port })
		}
		if next.PublicPorts, err = publicPorts(next.PublicPorts); err != nil {
			return nil, err
		}
		if len(next.PublicPorts) == 0 {
			next.PublicPorts = nil
		}
		err = s.cfg.Store.UpdateSandbox(ctx, next)
		if err == nil {
			return next, nil
		}
		if !errdefs.Is(err, errdefs.Conflict) || attempt >= 10 {
			return nil, err
		}
	}
}

func (s *Server) putPort(w http.ResponseWriter, r *http.Request, p Principal) error {
	port, err := strconv.Atoi(r.PathValue("port"))
	if err != nil {
		return errdefs.New(errdefs.InvalidArgument, "port %q: want a number from 1 to 65535, or 0 for every port", r.PathValue("port"))
	}
	var req rest.PortAccessRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sb, err := s.SetPortPublic(r.Context(), p, r.PathValue("id"), port, req.Public)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.toREST(sb))
}
