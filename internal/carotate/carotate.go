// Package carotate rotates the cluster CA without a moment in which two
// den processes distrust each other. The CA lives in the replicated state
// (store.ClusterCA); a rotation takes three steps there, and the leader
// takes each only when every server and every connected node has taken
// the one before:
//
//  1. begin (phase trust): a new CA is trusted everywhere beside the old,
//     which still signs. Servers acknowledge in the state; nodes learn
//     the pair by renewing their certificate, which their heartbeat
//     reports.
//  2. sign (phase sign): the new CA signs. Servers sign their own
//     certificates again and acknowledge; nodes renew and report the new
//     issuer. The old CA is still trusted, so certificates of either
//     work meanwhile.
//  3. finish: the old CA is dropped.
//
// The leader begins a rotation by itself when the CA has a third of its
// life left (pki.NeedsRenewal), or when an operator asks (den ca rotate).
// A rotation survives a change of leader: its phase is in the state, and
// whoever leads next goes on from it.
package carotate

import (
	"context"
	"crypto/x509"
	"log/slog"
	"slices"
	"time"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// Status is where the cluster CA and a rotation of it stand.
type Status struct {
	// Phase is "stable", "trust" or "sign" (store.ClusterCA.PhaseName);
	// Generation counts the steps ever taken.
	Phase      string
	Generation uint64
	// Signer signs certificates now; Next is trusted beside it in phase
	// trust, Previous in phase sign.
	Signer         CAInfo
	Next, Previous *CAInfo
	// Trust is the hash (pki.BundleHash) of the CAs trusted now.
	Trust                      string
	RotationStarted, RotatedAt time.Time
	// WaitingServers are the servers that have not acknowledged the last
	// step; WaitingNodes the nodes up that have not taken it (they trust
	// other CAs, or their certificate is of another). The next step waits
	// for both to be empty; after a rotation's last step they empty as
	// everyone drops the old CA.
	WaitingServers, WaitingNodes []string
}

// CAInfo names a CA certificate.
type CAInfo struct {
	Hash      string
	NotAfter  time.Time
	NotBefore time.Time
}

// NodeCAs says what node id last reported of its CAs (the hash of those
// it trusts, and of its certificate's), ok false when it has no session
// on this server.
type NodeCAs func(id string) (trust, issuer string, ok bool)

// Certs are the parsed certificates of a record: the signer and the
// others it trusts.
func Certs(rec *store.ClusterCA) (signer *pki.CA, also []*x509.Certificate, err error) {
	signer, err = pki.ParseCA([]byte(rec.CertPEM), []byte(rec.KeyPEM))
	if err != nil {
		return nil, nil, errdefs.Wrap(errdefs.Internal, err, "the cluster CA in the state")
	}
	for _, p := range []string{rec.NextCertPEM, rec.PrevCertPEM} {
		if p == "" {
			continue
		}
		c, err := pki.ParseCert([]byte(p))
		if err != nil {
			return nil, nil, errdefs.Wrap(errdefs.Internal, err, "a cluster CA of the rotation in the state")
		}
		also = append(also, c)
	}
	return signer, also, nil
}

// StatusOf reads the rotation's status from snap: servers are the raft
// members, nodes what the nodes connected here reported.
func StatusOf(snap *store.Snapshot, servers []store.Member, nodes NodeCAs) (Status, error) {
	rec, err := snap.ClusterCA()
	if err != nil {
		return Status{}, err
	}
	signer, also, err := Certs(rec)
	if err != nil {
		return Status{}, err
	}
	trusted := append([]*x509.Certificate{signer.Cert}, also...)
	st := Status{Phase: rec.PhaseName(), Generation: rec.Generation, Signer: info(signer.Cert),
		Trust: pki.BundleHash(trusted), RotationStarted: rec.RotationStarted, RotatedAt: rec.RotatedAt}
	for _, c := range also {
		ci := info(c)
		if rec.Phase == store.CATrust {
			st.Next = &ci
		} else {
			st.Previous = &ci
		}
	}
	if rec.Generation == 0 {
		return st, nil // never rotated: nothing to wait for
	}
	for _, m := range servers {
		if rec.Acks[m.ID] != rec.Generation {
			st.WaitingServers = append(st.WaitingServers, m.ID)
		}
	}
	ns, err := snap.Nodes()
	if err != nil {
		return Status{}, err
	}
	for _, n := range ns {
		if n.State == store.NodeDown {
			continue // it joins again with a token after the rotation
		}
		trust, issuer, ok := nodes(n.ID)
		if !ok || trust != st.Trust || issuer != st.Signer.Hash {
			st.WaitingNodes = append(st.WaitingNodes, n.ID)
		}
	}
	slices.Sort(st.WaitingServers)
	slices.Sort(st.WaitingNodes)
	return st, nil
}

func info(c *x509.Certificate) CAInfo {
	return CAInfo{Hash: pki.CertHash(c), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}

// Begin starts a rotation with a new CA: FailedPrecondition when one is
// under way.
func Begin(ctx context.Context, st *store.Store) error {
	rec, err := st.Snapshot().ClusterCA()
	if err != nil {
		return err
	}
	if rec.Phase != store.CAStable {
		return errdefs.New(errdefs.FailedPrecondition, "a rotation of the cluster CA is under way (phase %s): wait for it, or abort it while its phase is trust", rec.Phase)
	}
	next, err := pki.NewCA("den cluster CA")
	if err != nil {
		return err
	}
	return st.RotateClusterCA(ctx, store.CABegin, rec.Generation, next.CertPEM, next.KeyPEM)
}

// Abort drops the next CA of a rotation in phase trust; in phase sign
// the new CA already signs, and the rotation can only go on.
func Abort(ctx context.Context, st *store.Store) error {
	rec, err := st.Snapshot().ClusterCA()
	if err != nil {
		return err
	}
	switch rec.Phase {
	case store.CAStable:
		return errdefs.New(errdefs.FailedPrecondition, "no rotation of the cluster CA is under way")
	case store.CASign:
		return errdefs.New(errdefs.FailedPrecondition, "the rotation's new CA signs already: it can only finish (see den ca status for what it waits for)")
	}
	return st.RotateClusterCA(ctx, store.CAAbort, rec.Generation, nil, nil)
}

// Rotator takes the steps of rotations while this server leads.
type Rotator struct {
	Store *store.Store
	// Leading reports whether this server leads.
	Leading func() bool
	Nodes   NodeCAs
	Logger  *slog.Logger
	// Interval is how often it looks; 0 means a second.
	Interval time.Duration
	// Due decides when the CA is rotated by itself; nil means
	// pki.NeedsRenewal (a third of its life left).
	Due func(ca *x509.Certificate, now time.Time) bool
}

// Run looks every Interval until ctx ends.
func (r *Rotator) Run(ctx context.Context) {
	every := r.Interval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.Leading() {
			continue
		}
		if err := r.Step(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Warn("CA rotation", "error", err)
		}
	}
}

// Step takes the next step of a rotation when everyone took the last
// one, or begins a rotation when the CA is due.
func (r *Rotator) Step(ctx context.Context) error {
	rec, err := r.Store.Snapshot().ClusterCA()
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Phase == store.CAStable {
		due := r.Due
		if due == nil {
			due = pki.NeedsRenewal
		}
		cert, err := pki.ParseCert([]byte(rec.CertPEM))
		if err != nil || !due(cert, time.Now()) {
			return err
		}
		r.Logger.Info("the cluster CA is due for rotation: beginning", "ca", pki.CertHash(cert), "not_after", cert.NotAfter.UTC())
		return Begin(ctx, r.Store)
	}
	members, err := r.Store.Members()
	if err != nil {
		return err
	}
	st, err := StatusOf(r.Store.Snapshot(), members, r.Nodes)
	if err != nil || len(st.WaitingServers) > 0 || len(st.WaitingNodes) > 0 {
		return err
	}
	step := store.CAAdvance
	if rec.Phase == store.CASign {
		step = store.CAFinish
	}
	if err := r.Store.RotateClusterCA(ctx, step, rec.Generation, nil, nil); err != nil {
		if errdefs.Is(err, errdefs.Conflict) {
			return nil // someone took a step meanwhile; look again
		}
		return err
	}
	r.Logger.Info("CA rotation: step taken", "step", step, "generation", rec.Generation+1)
	return nil
}
