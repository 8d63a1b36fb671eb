package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"github.com/denhq/den/internal/carotate"
	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// The cluster CA on a server: the replicated state holds it (and a
// rotation of it, see internal/carotate); every server follows the state
// into its Authority, its own certificate and its --ca-dir, and says so
// in the state, which is how the leader knows it may take a rotation's
// next step.

// recordCA puts this server's CA into the replicated state when it holds
// none (see recordClusterCA). A server that joined with a token knows only
// the CA's certificate: it waits for the state to hold the CA, checks it
// is one the token's server trusted, and keeps it in --ca-dir, so that it
// can sign agents' certificates when it leads and restarts without the
// token. Either way it then follows the state (syncCA), which may be in
// the middle of a rotation.
func (r *serverRun) recordCA(ctx context.Context) error {
	if r.ca.Key != nil {
		if err := recordClusterCA(ctx, r.st, r.ca); err != nil {
			return err
		}
		return r.syncCA(ctx)
	}
	if _, err := caFromState(ctx, r.st, r.ca.Hash(), caFromStateTimeout); err != nil {
		return err
	}
	if err := r.syncCA(ctx); err != nil {
		return err
	}
	r.log.Info("read the cluster CA from the replicated state", "ca_dir", r.cfg.CADir, "ca", r.auth.SignerHash())
	return nil
}

// caFromStateTimeout bounds how long a server that joined with a token
// waits for its state to catch up with the CA record.
const caFromStateTimeout = 2 * time.Minute

// caFromState waits until st holds the cluster CA and returns its record;
// want, the hash of the CA this server was given, must be among those the
// record trusts.
func caFromState(ctx context.Context, st *store.Store, want string, timeout time.Duration) (*store.ClusterCA, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		rec, err := st.Snapshot().ClusterCA()
		if err == nil {
			if !slices.Contains(recordHashes(rec), want) {
				return nil, errdefs.New(errdefs.FailedPrecondition, "the state's cluster CA (%s) is not the one the token's server answered with (%s)", recordHashes(rec)[0], want)
			}
			return rec, nil
		}
		if !errdefs.IsNotFound(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, errdefs.New(errdefs.Unavailable, "the replicated state holds no cluster CA after %s: are the other servers of a den older than this one? Copy the CA directory instead", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// recordHashes are the hashes of the CAs a record trusts, the signer's
// first ("unreadable" for one that does not parse).
func recordHashes(rec *store.ClusterCA) []string {
	var hs []string
	for _, p := range []string{rec.CertPEM, rec.NextCertPEM, rec.PrevCertPEM} {
		if p == "" {
			continue
		}
		h := "unreadable"
		if c, err := pki.ParseCert([]byte(p)); err == nil {
			h = pki.CertHash(c)
		}
		hs = append(hs, h)
	}
	return hs
}

// recordClusterCA makes sure the replicated state holds the cluster CA, and
// that it is ca or one a rotation under way still trusts: the first server
// to start writes it; a server whose CA is not the state's is refused (it
// was given another cluster's CA directory, or was away for a whole
// rotation and must join again with a token).
func recordClusterCA(ctx context.Context, st *store.Store, ca *pki.CA) error {
	cur, err := st.Snapshot().ClusterCA()
	switch {
	case err == nil && slices.Contains(recordHashes(cur), ca.Hash()):
		return nil
	case err == nil:
		return errdefs.New(errdefs.FailedPrecondition,
			"this server's CA (%s) is not the cluster's (%s): use the cluster's CA directory (--ca-dir); a server that was stopped through a whole rotation of the CA joins again with a server token (den token create --server)",
			ca.Hash(), recordHashes(cur)[0])
	case !errdefs.IsNotFound(err):
		return err
	}
	return st.PutClusterCA(ctx, ca.CertPEM, ca.KeyPEM)
}

// followCA keeps this server on the state's cluster CA until ctx ends.
func (r *serverRun) followCA(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.syncCA(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("follow the cluster CA", "error", err)
		}
	}
}

// syncCA brings this server to the state's cluster CA: it trusts what the
// record trusts and signs with its CA, keeps both in --ca-dir (so that a
// restart mid-rotation trusts its peers), signs its own certificate again
// when another CA signs now, and then acknowledges the record's
// generation in the state.
func (r *serverRun) syncCA(ctx context.Context) error {
	rec, err := r.st.Snapshot().ClusterCA()
	if err != nil {
		return err
	}
	signer, also, err := carotate.Certs(rec)
	if err != nil {
		return err
	}
	trusted := append([]*x509.Certificate{signer.Cert}, also...)
	if signer.Hash() != r.auth.SignerHash() || pki.BundleHash(trusted) != r.auth.TrustHash() || r.auth.Signer().Key == nil {
		// The CAs beside the signer first: a crash between the two
		// writes leaves a directory that trusts too much, never too
		// little.
		if err := pki.SaveTrusted(r.cfg.CADir, also); err != nil {
			return fmt.Errorf("save the trusted CAs to %s: %w", r.cfg.CADir, err)
		}
		if err := signer.Save(r.cfg.CADir); err != nil {
			return fmt.Errorf("save the cluster CA to %s: %w", r.cfg.CADir, err)
		}
		r.auth.Set(signer, also...)
		r.log.Info("following the cluster CA", "phase", rec.PhaseName(), "generation", rec.Generation,
			"signer", signer.Hash(), "trusted", len(trusted))
	}
	leaf, err := r.certs.Leaf()
	if err != nil {
		return err
	}
	if leaf.CheckSignatureFrom(signer.Cert) != nil {
		cert, err := r.issue()
		if err != nil {
			return fmt.Errorf("sign this server's certificate with the new CA: %w", err)
		}
		r.certs.Set(cert)
		r.log.Info("this server's certificate is signed by the new cluster CA", "ca", signer.Hash())
	}
	if rec.Generation > 0 && rec.Acks[r.cfg.ID] != rec.Generation {
		if err := r.st.AckClusterCA(ctx, r.cfg.ID, rec.Generation); err != nil {
			return fmt.Errorf("acknowledge generation %d of the cluster CA: %w", rec.Generation, err)
		}
	}
	return nil
}

// rotator takes the steps of CA rotations while this server leads.
func (r *serverRun) rotator() *carotate.Rotator {
	return &carotate.Rotator{Store: r.st, Leading: r.leading, Nodes: r.nodes.CAs, Logger: r.log}
}
