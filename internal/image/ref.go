package image

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/denhq/den/internal/errdefs"
)

// dockerHub is how den writes Docker Hub's registry in image names, as
// docker and containerd do (go-containerregistry says "index.docker.io").
const dockerHub = "docker.io"

// parseReference parses an image reference for a registry operation.
// insecure allows plain HTTP to the registry.
func parseReference(ref string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.InvalidArgument, err, "invalid image reference %q", ref)
	}
	return r, nil
}

// referenceName is the name den records a pulled image under: registry and
// repository in full ("docker.io/library/alpine" for "alpine") and the tag,
// ":latest" when none is given, or the digest.
func referenceName(r name.Reference) string {
	reg := r.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		reg = dockerHub
	}
	base := reg + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		return base + "@" + d.DigestStr()
	}
	return base + ":" + r.Identifier()
}

// normalizeName is referenceName of the reference ref.
func normalizeName(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	return referenceName(r), nil
}

// authenticator returns the credentials for a registry: basic auth with
// username and password (which also serve a token flow), else anonymous.
func authenticator(username, password string) authn.Authenticator {
	if username == "" && password == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: username, Password: password}
}

// registryError classifies an error of a registry operation on repo.
// withCreds says whether credentials were given, for the hint of a 401.
func registryError(err error, repo name.Repository, withCreds bool) error {
	if err == nil || errdefs.KindOf(err) != errdefs.Internal {
		return err
	}
	host := repo.RegistryStr()
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusUnauthorized && withCreds:
			return errdefs.Wrap(errdefs.Unauthenticated, err, "registry %s rejected the credentials", host)
		case terr.StatusCode == http.StatusUnauthorized:
			return errdefs.Wrap(errdefs.Unauthenticated, err, "registry %s requires credentials", host)
		case terr.StatusCode == http.StatusForbidden:
			return errdefs.Wrap(errdefs.PermissionDenied, err, "registry %s denied access to %s", host, repo.RepositoryStr())
		case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode):
			return errdefs.Wrap(errdefs.NotFound, err, "not found in registry %s", host)
		case terr.StatusCode == http.StatusTooManyRequests:
			return errdefs.Wrap(errdefs.ResourceExhausted, err, "registry %s is rate limiting", host)
		case terr.StatusCode >= 500:
			return errdefs.Wrap(errdefs.Unavailable, err, "registry %s failed", host)
		default:
			return errdefs.Wrap(errdefs.InvalidArgument, err, "registry %s refused the request", host)
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errdefs.Wrap(errdefs.Unavailable, err, "connection to registry %s dropped", host)
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return errdefs.Wrap(errdefs.Unavailable, err, "cannot reach registry %s", host)
	}
	return err
}

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// syncProgress makes progress safe to call from several goroutines: calls
// are serialised. nil becomes a no-op.
func syncProgress(progress func(Progress)) func(Progress) {
	if progress == nil {
		return func(Progress) {}
	}
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		progress(p)
	}
}
