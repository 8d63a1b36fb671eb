package carotate

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/denhq/den/internal/errdefs"
	"github.com/denhq/den/internal/pki"
	"github.com/denhq/den/internal/store"
)

// The rotator takes each step only when every server acknowledged the last
// and every node that is up reports the CAs of it; a node that is down is
// not waited for. It begins by itself when the CA is due.
func TestRotatorSteps(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, _ := pki.NewCA("a")
	if err := st.PutClusterCA(ctx, a.CertPEM, a.KeyPEM); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.PutJoinToken(ctx, &store.JoinToken{ID: "t", Hash: "h", Uses: 2, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2"} {
		if err := st.JoinNode(ctx, "t", "h", now, &store.Node{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.NodeUp(ctx, "n1", "s1", now, store.NodeHello{}); err != nil { // n2 stays down
		t.Fatal(err)
	}
	type cas struct{ trust, issuer string }
	reported := map[string]cas{}
	due := false
	r := &Rotator{Store: st, Leading: func() bool { return true }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Nodes: func(id string) (string, string, bool) { c, ok := reported[id]; return c.trust, c.issuer, ok },
		Due:   func(*x509.Certificate, time.Time) bool { return due }}
	rec := func() *store.ClusterCA {
		t.Helper()
		c, err := st.Snapshot().ClusterCA()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	step := func(wantPhase string, wantGen uint64) {
		t.Helper()
		if err := r.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if c := rec(); c.Phase != wantPhase || c.Generation != wantGen {
			t.Fatalf("after a step: phase %q generation %d, want %q %d", c.Phase, c.Generation, wantPhase, wantGen)
		}
	}
	waiting := func(servers, nodes int) {
		t.Helper()
		ms, _ := st.Members()
		s, err := StatusOf(st.Snapshot(), ms, r.Nodes)
		if err != nil || len(s.WaitingServers) != servers || len(s.WaitingNodes) != nodes {
			t.Fatalf("status %+v, %v: want %d servers and %d nodes waited for", s, err, servers, nodes)
		}
	}

	step(store.CAStable, 0) // not due
	due = true
	step(store.CATrust, 1)
	b, err := pki.ParseCert([]byte(rec().NextCertPEM))
	if err != nil {
		t.Fatal(err)
	}
	step(store.CATrust, 1) // no one took it
	waiting(1, 1)
	if err := st.AckClusterCA(ctx, "s1", 1); err != nil {
		t.Fatal(err)
	}
	step(store.CATrust, 1) // n1 has not said
	reported["n1"] = cas{pki.BundleHash([]*x509.Certificate{a.Cert}), a.Hash()}
	step(store.CATrust, 1) // n1 still trusts only a
	reported["n1"] = cas{pki.BundleHash([]*x509.Certificate{a.Cert, b}), a.Hash()}
	waiting(0, 0)
	step(store.CASign, 2)
	if err := st.AckClusterCA(ctx, "s1", 2); err != nil {
		t.Fatal(err)
	}
	step(store.CASign, 2) // n1's certificate is still of a
	reported["n1"] = cas{pki.BundleHash([]*x509.Certificate{a.Cert, b}), pki.CertHash(b)}
	due = false
	step(store.CAStable, 3)
	if c := rec(); c.CertPEM != string(pki.BundlePEM([]*x509.Certificate{b})) || c.PrevCertPEM != "" {
		t.Fatal("after the rotation the state does not sign with the new CA alone")
	}
	// The old CA is dropped everywhere once all say so.
	waiting(1, 1)
	st.AckClusterCA(ctx, "s1", 3)
	reported["n1"] = cas{pki.BundleHash([]*x509.Certificate{b}), pki.CertHash(b)}
	waiting(0, 0)
	step(store.CAStable, 3)

	if err := Abort(ctx, st); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("abort with no rotation: %v", err)
	}
	if err := Begin(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := Begin(ctx, st); !errdefs.Is(err, errdefs.FailedPrecondition) {
		t.Fatalf("a second begin: %v", err)
	}
	if err := Abort(ctx, st); err != nil {
		t.Fatal(err)
	}
	if c := rec(); c.Phase != store.CAStable || c.NextCertPEM != "" || c.CertPEM != string(pki.BundlePEM([]*x509.Certificate{b})) {
		t.Fatalf("after abort: %+v", c)
	}
}

// The collector reports the signer's expiry and the rotation's phase.
func TestCollector(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(Collector(st)); err != nil {
		t.Fatal(err)
	}
	gather := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		return got
	}
	if got := gather(); len(got) != 0 {
		t.Fatalf("metrics with no CA in the state: %v", got)
	}
	a, _ := pki.NewCA("a")
	if err := st.PutClusterCA(ctx, a.CertPEM, a.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if err := Begin(ctx, st); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"den_cluster_ca_expiry_timestamp_seconds": float64(a.Cert.NotAfter.Unix()),
		"den_cluster_ca_rotation_phase":           1,
		"den_cluster_ca_rotation_steps_total":     1,
	}
	if got := gather(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
}
