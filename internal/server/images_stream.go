package server

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/denhq/den/api/rest"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
)

// progressInterval is the least time between two progress lines of one
// layer in one phase; phase changes and a layer's last report always go out.
const progressInterval = 200 * time.Millisecond

// pullImage pulls an image from a registry, streaming progress as NDJSON.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "pull images"); err != nil {
		return err
	}
	var req rest.PullImageRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Ref == "" {
		return errdefs.New(errdefs.InvalidArgument, "ref is required: the image to pull, e.g. docker.io/library/alpine:3.20")
	}
	st := s.newEventStream(w)
	opts := image.PullOptions{Insecure: req.Insecure, Username: req.Username, Password: req.Password, Platform: req.Platform}
	im, err := s.cfg.Images.Pull(r.Context(), req.Ref, opts, st.progress)
	var last rest.ImageEvent
	if err == nil {
		ri := imageToREST(im)
		last.Image = &ri
	}
	return s.endStream(r, st, last, err)
}

// pushImage pushes a stored image to a registry, streaming progress as NDJSON.
func (s *Server) pushImage(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := requireAdmin(p, "push images"); err != nil {
		return err
	}
	var req rest.PushImageRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Image == "" {
		return errdefs.New(errdefs.InvalidArgument, "image is required: the name or ID of the image to push")
	}
	if req.Dest == "" {
		return errdefs.New(errdefs.InvalidArgument, "dest is required: the registry reference to push to, e.g. registry.example.com/team/app:v1")
	}
	if _, err := s.cfg.Images.Get(req.Image); err != nil {
		return err
	}
	st := s.newEventStream(w)
	opts := image.PushOptions{Insecure: req.Insecure, Username: req.Username, Password: req.Password}
	digest, err := s.cfg.Images.Push(r.Context(), req.Image, req.Dest, opts, st.progress)
	return s.endStream(r, st, rest.ImageEvent{Digest: digest}, err)
}

// endStream finishes an NDJSON answer with last, or with err when it is
// not nil. An error before the stream began is returned, for the handler
// to answer with its status; later it becomes the stream's last line.
func (s *Server) endStream(r *http.Request, st *eventStream, last rest.ImageEvent, err error) error {
	if err == nil {
		st.send(last)
		return nil
	}
	if !st.hasStarted() {
		return err
	}
	s.logError(r, err)
	st.send(rest.ImageEvent{Error: &rest.Error{Code: errdefs.KindOf(err).Code(), Message: err.Error()}})
	return nil
}

// eventStream writes an NDJSON answer of rest.ImageEvent lines, flushing
// each. Its first line sends the 200 and the headers. It is safe for
// concurrent use: pulls report the progress of layers in parallel.
type eventStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	now func() time.Time

	mu      sync.Mutex
	started bool
	gone    bool                    // a write failed: the client left
	last    map[string]progressMark // by layer (Progress.Detail)
}

// progressMark is the last progress line sent for a layer.
type progressMark struct {
	phase string
	at    time.Time
}

func (s *Server) newEventStream(w http.ResponseWriter) *eventStream {
	return &eventStream{w: w, rc: http.NewResponseController(w), now: s.cfg.Now, last: map[string]progressMark{}}
}

func (st *eventStream) hasStarted() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.started
}

// send writes one line.
func (st *eventStream) send(ev rest.ImageEvent) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sendLocked(ev)
}

// sendLocked writes one line. A failed write marks the client gone and
// drops later lines; the request's context ends the work. Preconditions:
// st.mu is held.
func (st *eventStream) sendLocked(ev rest.ImageEvent) {
	if st.gone {
		return
	}
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", rest.NDJSONContentType)
		st.w.Header().Set("X-Content-Type-Options", "nosniff")
		st.w.WriteHeader(http.StatusOK)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		b, _ = json.Marshal(rest.ImageEvent{Error: &rest.Error{Code: errdefs.Internal.Code(), Message: "encode event: " + err.Error()}})
	}
	if _, err := st.w.Write(append(b, '\n')); err != nil {
		st.gone = true
		return
	}
	if err := st.rc.Flush(); err != nil {
		st.gone = true
	}
}

// progress sends p unless the same layer reported the same phase less than
// progressInterval ago; a phase change and a layer's final count
// (Current == Total) always go out.
func (st *eventStream) progress(p image.Progress) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	m, seen := st.last[p.Detail]
	final := p.Total > 0 && p.Current >= p.Total
	if seen && m.phase == p.Phase && !final && now.Sub(m.at) < progressInterval {
		return
	}
	st.last[p.Detail] = progressMark{phase: p.Phase, at: now}
	st.sendLocked(rest.ImageEvent{Progress: &rest.ImageProgress{Phase: p.Phase, Current: p.Current, Total: p.Total, Detail: p.Detail}})
}

// log sends one line of build output.
func (st *eventStream) log(line string) {
	st.send(rest.ImageEvent{Log: &line})
}
