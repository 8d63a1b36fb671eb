package noderpc

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/denhq/den/internal/driver"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/image"
	"github.com/denhq/den/internal/nodelink"
)

// mImageExport streams an image as a docker archive (agent → server).
const mImageExport = "images.export"

// fetchTimeout bounds one image transfer to a node.
const fetchTimeout = 30 * time.Minute

// ServeImages registers on mux (the server's end) the stream nodes fetch
// images with: the images live on the servers, and a node copies each one
// it needs once, over its link.
func ServeImages(mux *nodelink.Mux, images *image.Store) {
	mux.HandleStream(mImageExport, func(ctx context.Context, raw json.RawMessage, st *nodelink.Stream) {
		var req idReq
		if err := decode(raw, &req); err != nil {
			st.Refuse(err)
			return
		}
		if _, err := images.Get(req.ID); err != nil {
			st.Refuse(err)
			return
		}
		conn, err := st.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if err := images.Export(ctx, req.ID, image.FormatDockerArchive, conn); err != nil {
			// The node's import sees a truncated archive and fails.
			return
		}
	})
}

// PullThrough resolves images on an agent: from its own image store, and
// an image it lacks is fetched from the servers over the link first.
type PullThrough struct {
	Local *image.Store
	Link  *Link

	mu       sync.Mutex
	inflight map[string]*fetch // guarded by mu
}

type fetch struct {
	done chan struct{}
	err  error
}

// Rootfs is the image's root filesystem, fetched if need be.
func (p *PullThrough) Rootfs(ref string) (driver.Image, error) {
	img, err := p.Local.Rootfs(ref)
	if !errdefs.IsNotFound(err) {
		return img, err
	}
	if err := p.fetch(ref); err != nil {
		return driver.Image{}, err
	}
	return p.Local.Rootfs(ref)
}

// fetch copies ref from the servers; concurrent fetches of one ref share
// one transfer.
func (p *PullThrough) fetch(ref string) error {
	p.mu.Lock()
	if p.inflight == nil {
		p.inflight = map[string]*fetch{}
	}
	if f, ok := p.inflight[ref]; ok {
		p.mu.Unlock()
		<-f.done
		return f.err
	}
	f := &fetch{done: make(chan struct{})}
	p.inflight[ref] = f
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, ref)
		p.mu.Unlock()
		close(f.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	s, err := p.Link.Session()
	if err != nil {
		f.err = err
		return err
	}
	conn, err := s.Open(ctx, mImageExport, idReq{ID: ref})
	if err != nil {
		f.err = err
		return err
	}
	defer conn.Close()
	name := ref
	if strings.HasPrefix(ref, "sha256:") {
		name = "" // an ID: the archive names the image
	}
	if _, err := p.Local.Import(ctx, conn, name, nil); err != nil {
		f.err = errdefs.Wrap(errdefs.KindOf(err), err, "fetch image %s from the servers", ref)
	}
	return f.err
}
