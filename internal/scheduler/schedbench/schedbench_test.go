package schedbench

import (
	"testing"

	"github.com/denhq/den/internal/scheduler"
)

// TestRunSmall runs every phase on a small cluster: the invariants are
// checked after each, and the mix must fill and churn.
func TestRunSmall(t *testing.T) {
	cfg := DefaultConfig(1000)
	cfg.ChurnOps, cfg.Bursts, cfg.NaiveOps = 5000, 3, 200
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.PrefillUtil < 0.8 || r.Churn.Placements < cfg.ChurnOps*9/10 || r.InvariantChecks < 5 {
		t.Fatalf("result: %+v", r)
	}
	if r.FillBestFit <= r.FillSpread {
		t.Fatalf("best-fit filled to %.3f, spread to %.3f: best-fit should pack tighter", r.FillBestFit, r.FillSpread)
	}
	if r.Naive == nil || r.Naive.Placements == 0 {
		t.Fatalf("naive floor: %+v", r.Naive)
	}
}

// BenchmarkPlaceChurn10k is one churn pair (delete + place) per op at 10k
// nodes, 85% full: `go test -bench PlaceChurn ./internal/scheduler/schedbench`.
func BenchmarkPlaceChurn10k(b *testing.B) { benchChurn(b, 10_000) }

func benchChurn(b *testing.B, nodes int) {
	c := NewCluster(nodes, 1)
	s, err := c.Build(scheduler.BestFit)
	if err != nil {
		b.Fatal(err)
	}
	live, err := prefill(s, c, newMix(1, "p"), 0.85)
	if err != nil {
		b.Fatal(err)
	}
	m := newMix(2, "c")
	reqs := make([]scheduler.Request, b.N)
	for i := range reqs {
		reqs[i] = m.request(-1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, req := range reqs {
		if id, ok := live.take(homePool(req), uint64(i)*2654435761); ok {
			if err := s.Release(homePool(req), id); err != nil {
				b.Fatal(err)
			}
		}
		if p, err := s.Place(req); err == nil {
			live.add(p)
		}
		if i%benchBatch == benchBatch-1 {
			s.Commit()
		}
	}
	b.StopTimer()
	if err := s.Working().Check(); err != nil {
		b.Fatal(err)
	}
}

var benchBatch = 1000
